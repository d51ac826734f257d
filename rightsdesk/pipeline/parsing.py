"""Parsing and classifying stored messages, in a pool thread, before any write transaction.

Nothing is classified inside the write transaction (it holds the messages' row locks, and on
SQLite the one write lock). Mail that is not automatic is classified: a reply is classified
for nothing, which costs less than classifying inside the transaction; a mail without a From
address too (UseEnvelopeSender may find it one). Mail that may be a reply (it refers to other
mail, or carries a ticket tag) has its new text classified alone too, for ReadFollowUp.

    parse_all            a batch: every message parsed, then everything to classify in one
                         call (`classify_many_here`: the model's pipeline once for the batch)
    parse_and_classify   one message (routed alone)
"""

from __future__ import annotations

from typing import cast

from rightsdesk.followups import worth_reading
from rightsdesk.inbound import InboundMessage
from rightsdesk.pipeline.classification import ClassifiesOffLoop
from rightsdesk.pipeline.routing import TICKET_TAG, Parsed, Parser


def parse_all(
    parsers: dict[str, Parser],
    classifier: ClassifiesOffLoop | None,
    raws: list[tuple[int, str, bytes | None]],
) -> dict[int, Parsed | Exception]:
    """In a pool thread: each message parsed, then classified in one call for the batch. A
    message the parser fails on is its exception; if the one call fails, each message is
    classified alone (unless it was one message's), so that only the one the classifier
    fails on is an exception."""
    found: dict[int, Parsed | Exception] = {}
    for row_id, channel, raw in raws:
        parser = parsers.get(channel)
        try:
            if parser is None or raw is None:
                raise ValueError(f"no parser for channel {channel!r}")
            found[row_id] = (parser(raw), None, None)
        except Exception as exc:  # a parser's bug: this message alone fails
            found[row_id] = exc
    if classifier is None:
        return found
    asks: list[tuple[int, str, str, bool]] = []  # (row id, subject, text, a follow-up's)
    for row_id, parsed in found.items():
        if isinstance(parsed, Exception) or parsed[0].auto_generated:
            continue
        inbound = parsed[0]
        asks.append((row_id, inbound.subject, inbound.text, False))
        said = follow_up_text(inbound)
        if said is not None:
            asks.append((row_id, "", said, True))
    try:
        answers = classifier.classify_many_here([(s, t) for _, s, t, _ in asks])
    except Exception as exc:
        if len({row_id for row_id, _, _, _ in asks}) == 1:  # that one call was its try
            found[asks[0][0]] = exc
            return found
        for row_id, parsed in list(found.items()):
            if not isinstance(parsed, Exception):
                try:
                    found[row_id] = classified(classifier, parsed[0])
                except Exception as alone:  # the classifier fails on this one alone
                    found[row_id] = alone
        return found
    for (row_id, _, _, follow_up), answer in zip(asks, answers, strict=True):
        inbound, classification, later = cast("Parsed", found[row_id])
        if follow_up:
            found[row_id] = (inbound, classification, answer)
        else:
            found[row_id] = (inbound, answer, later)
    return found


def parse_and_classify(classifier: ClassifiesOffLoop | None, parser: Parser, raw: bytes) -> Parsed:
    """In a pool thread: one message, parsed and classified."""
    return classified(classifier, parser(raw))


def classified(classifier: ClassifiesOffLoop | None, inbound: InboundMessage) -> Parsed:
    if classifier is None or inbound.auto_generated:
        return inbound, None, None
    found = classifier.classify_here(inbound.subject, inbound.text)
    said = follow_up_text(inbound)
    follow_up = classifier.classify_here("", said) if said is not None else None
    return inbound, found, follow_up


def follow_up_text(inbound: InboundMessage) -> str | None:
    """The new text of mail that may be a reply (it refers to other mail, or carries a
    ticket tag), classified alone too, for ReadFollowUp."""
    said = worth_reading(inbound.text)
    if said is not None and (inbound.references or TICKET_TAG.search(inbound.subject)):
        return said
    return None
