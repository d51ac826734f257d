"""The pipeline's own components: identifiers as entities, and the rule layer.

Both are registered spaCy factories, so a saved pipeline loads with `spacy.load` once this
module is imported (`classifiers.model` imports it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from classifiers.labels import NOT_A_REQUEST
from classifiers.rules import CODE_WORDS, RULES, SHORT_MESSAGE, child_ages, states_child_under_14
from rightsdesk.identifiers import Identifier, find_identifiers

MINOR = "minor"
_WORDLESS = re.compile(r"[\W\d_]*")  # no letter of any script: digits, punctuation, emoji

if not Doc.has_extension("identifiers"):
    Doc.set_extension("identifiers", default=None)


TEXT_KEY = "rightsdesk.text"


def doc_text(doc: Doc) -> str:
    """`doc.text`, which spaCy rebuilds from the tokens on every access: our tokenizer keeps
    the text it was given (classifiers.pipeline), and other docs build it once."""
    text = doc.user_data.get(TEXT_KEY)
    if text is None:
        text = doc.user_data[TEXT_KEY] = doc.text
    return str(text)


class IdentifierEntities:
    """Emails, mainland mobiles, checksum-valid resident ID numbers (masked), PRIV references and
    usernames, found by `rightsdesk.identifiers` (the one place those patterns live) and set as
    `doc.ents`; the exact character offsets stay in `doc._.identifiers`."""

    def __call__(self, doc: Doc) -> Doc:
        found: list[Identifier] = find_identifiers(doc_text(doc))
        doc._.identifiers = found
        if not found:
            return doc  # most messages: setting no ents still rewrites every token's IOB
        spans = [
            span
            for ident in found
            if (span := doc.char_span(ident.start, ident.end, ident.label, alignment_mode="expand"))
            is not None
        ]
        doc.ents = filter_spans(spans)
        return doc


AUTOMATIC_WITHIN = 3  # tokens: where an automatic message's own marker stands


class RequestRules:
    """Phrases whose meaning does not depend on context (注销账号, unsubscribe, out of office).

    A match is kept in `doc.spans["rules"]` with the label it stands for; the classifier treats
    it as certain for that label. Patterns are tokenised by the pipeline's own tokenizer, so
    they match what jieba makes of the same words in a sentence.
    """

    def __init__(self, nlp: Language, rules: Mapping[str, Iterable[str]]) -> None:
        self.matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        self.not_a_request = nlp.vocab.strings.add(NOT_A_REQUEST)
        # The phrases in words only: the feature tokenizer (classifiers.pipeline) appends
        # character tokens that no message's words contain. A loaded pipeline builds this
        # before its tokenizer is wrapped; a new one after: both must match alike, or the
        # thresholds tuned in training are not those of the model in use.
        tokenizer = getattr(nlp.tokenizer, "inner", nlp.tokenizer)
        for label, phrases in rules.items():
            self.matcher.add(label, [tokenizer(p) for p in phrases])
        # A one-time code typed back ("验证码：358172", "my code is 640213").
        self.codes = Matcher(nlp.vocab)
        self.codes.add(
            NOT_A_REQUEST,
            [
                [
                    {"LOWER": {"IN": list(CODE_WORDS)}},
                    {"IS_ALPHA": False, "IS_DIGIT": False, "OP": "*"},
                    {"LOWER": {"IN": ["is", "是", "为"]}, "OP": "?"},
                    {"IS_DIGIT": True, "LENGTH": {">=": 4}},
                ]
            ],
        )

    def __call__(self, doc: Doc) -> Doc:
        text = doc_text(doc)
        spans = [
            Span(doc, start, end, label=match_id)
            for match_id, start, end in self.matcher(doc)
            # An auto-reply or a bounce says so first (its subject, its first words); one
            # mentioned later ("I only got an auto-reply") is a person writing.
            if match_id != self.not_a_request or start <= AUTOMATIC_WITHIN
        ]
        for found in child_ages(text):
            if states_child_under_14(found) and (
                span := doc.char_span(found.start(), found.end(), MINOR, alignment_mode="expand")
            ):
                spans.append(span)
        if len(doc) <= SHORT_MESSAGE and (_WORDLESS.fullmatch(text) or self.codes(doc)):
            # Nothing but digits, punctuation and emoji, or a code typed back: no request.
            spans.append(Span(doc, 0, len(doc), label=NOT_A_REQUEST))
        doc.spans["rules"] = spans
        return doc


@Language.factory("rightsdesk_identifiers")
def make_identifier_entities(nlp: Language, name: str) -> IdentifierEntities:
    return IdentifierEntities()


@Language.factory("rightsdesk_rules")
def make_request_rules(nlp: Language, name: str) -> RequestRules:
    return RequestRules(nlp, RULES)
