"""The first stages: what the mail is, before anything is decided about it."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Collection

from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.models import (
    ContactKind,
    Message,
    RequesterContact,
    StoredAttachment,
    Ticket,
)
from rightsdesk.outbound import can_mail
from rightsdesk.pipeline.routing import (
    SYSTEM,
    TICKET_TAG,
    Batch,
    Routing,
    storable,
)
from rightsdesk.signing import MessageIdSigner
from rightsdesk.tickets import TicketService

log = logging.getLogger("rightsdesk.intake")


class RecordParsed:
    """Keep what parsing found on the message row, and its attachments."""

    async def __call__(self, routing: Routing) -> bool:
        row = routing.row
        inbound = routing.inbound
        row.message_id = inbound.message_id
        row.sender = inbound.sender
        # PostgreSQL's text cannot hold NUL: a mail that carries one is stored without it.
        row.subject = storable(inbound.subject[:998])
        row.text = storable(inbound.full_text)
        row.new_text = storable(inbound.text)
        row.auto_generated = inbound.auto_generated
        row.sender_authenticated = inbound.auth.from_aligned
        row.details = {
            "sender_name": storable(inbound.sender_name),
            "recipients": inbound.recipients,
            "references": inbound.references[:50],
            "auth": {
                "spf": inbound.auth.spf,
                "dkim": inbound.auth.dkim,
                "dmarc": inbound.auth.dmarc,
                "from_aligned": inbound.auth.from_aligned,
            },
            "defects": inbound.defects[:20],
        }
        for attachment in inbound.attachments:
            routing.session.add(
                StoredAttachment(
                    message_id=row.id or 0,
                    filename=(attachment.filename or "")[:500] or None,
                    content_type=attachment.content_type[:200],
                    size=attachment.size,
                    sha256=attachment.sha256,
                    content=attachment.content,
                )
            )
        return True


# An internationalised address (RFC 6531/6532: `张三@例子.中国`, sent with SMTPUTF8): no
# white space, control character or address punctuation, one @, something on either side.
_ATOM = r'[^\s\x00-\x1f\x7f@<>()\[\]\\,;:"]+'
_INTERNATIONAL = re.compile(rf"^{_ATOM}@{_ATOM}$")


def _usable(address: str) -> bool:
    """An address a ticket can be kept under: one we can mail, or an internationalised one
    (our mail cannot be addressed to it, so it is not acknowledged; a person answers)."""
    if "@" not in address or len(address) > 320:
        return False
    return can_mail(address) or (not address.isascii() and bool(_INTERNATIONAL.match(address)))


class UseEnvelopeSender:
    """A From header without a usable address (a broken encoded word, an internationalised
    address the header parser does not take, none at all): the sender is the one the DPO
    named (`intake ticket`), else the envelope's (SMTP MAIL FROM, as our door saw it, else
    the Return-Path the last server wrote). Never authenticated."""

    async def __call__(self, routing: Routing) -> bool:
        inbound = routing.inbound
        if inbound.sender:
            return True
        for source, candidate in (
            ("intake ticket", routing.sender_hint),
            ("envelope", routing.row.envelope_from),
            ("return-path", inbound.return_path),
        ):
            address = (candidate or "").strip().strip("<>").lower()
            if _usable(address):
                inbound.sender = routing.row.sender = address
                routing.row.details = {**routing.row.details, "sender_from": source}
                return True
        return True


# Why a message was ignored, as `intake show` tells the DPO (kept in parse_error and details).
OWN_MAIL = "our own outbound mail, come back"
FROM_OURSELVES = "sent from one of the desk's own addresses: not a requester (a mail loop)"


class IgnoreOwnMail:
    """Our own mail coming back (our signed Message-ID), and mail from one of our own
    addresses: answering it would be the desk writing to itself, for ever."""

    def __init__(self, signer: MessageIdSigner, own_addresses: Collection[str] = ()) -> None:
        self.signer = signer
        self.own_addresses = frozenset(a.strip().lower() for a in own_addresses)

    async def __call__(self, routing: Routing) -> bool:
        if self.signer.ticket_of(routing.inbound.message_id) is not None:
            return self._ignore(routing, "own mail", OWN_MAIL)
        if (routing.inbound.sender or "").lower() in self.own_addresses:
            return self._ignore(routing, "from our own address", FROM_OURSELVES)
        return True

    def _ignore(self, routing: Routing, outcome: str, reason: str) -> bool:
        routing.row.parse_status = "ignored"
        routing.row.parse_error = reason
        routing.row.details = {**routing.row.details, "ignored": reason}
        routing.outcome = outcome
        return False


class FindThread:
    def __init__(self, signer: MessageIdSigner, tickets: TicketService) -> None:
        self.signer = signer
        self.tickets = tickets

    async def __call__(self, routing: Routing) -> bool:
        inbound = routing.inbound
        references = list(inbound.references)
        if inbound.bounce is not None:
            references += inbound.bounce.original_message_ids
        for reference in references:
            public_id = self.signer.ticket_of(reference)
            if public_id and await self.tickets.find_in(routing.session, public_id):
                routing.ticket = public_id
                routing.proof = "reference"
                return True
        # A subject tag alone is easy to type: trust it only from the ticket's own requester,
        # and even then a forged From: would pass, so say so to whoever reads it.
        tag = TICKET_TAG.search(inbound.subject)
        if tag and inbound.sender:
            ticket = await self.tickets.find_in(routing.session, tag.group(1).upper())
            if ticket is not None and await _is_requester_address(
                routing.session, ticket, inbound.sender
            ):
                routing.ticket = ticket.public_id
                routing.proof = "tag"
                routing.row.unauthenticated_thread = not inbound.auth.from_aligned
        return True


async def _is_requester_address(session: AsyncSession, ticket: Ticket, address: str) -> bool:
    found = await session.exec(
        select(RequesterContact.id)
        .where(RequesterContact.requester_id == ticket.requester_id)
        .where(RequesterContact.kind == ContactKind.EMAIL)
        .where(RequesterContact.value == address.lower())
    )
    return found.first() is not None


class RecordBounce:
    def __init__(self, tickets: TicketService) -> None:
        self.tickets = tickets

    async def __call__(self, routing: Routing) -> bool:
        inbound = routing.inbound
        if inbound.bounce is None:
            return True
        routing.outcome = "bounce"
        if routing.ticket is None:
            return False  # not a bounce of ours: stored, nothing more
        ticket = await self.tickets.find_in(routing.session, routing.ticket)
        assert ticket is not None
        for address in inbound.bounce.failed_recipients:
            await routing.session.exec(
                update(RequesterContact)
                .where(col(RequesterContact.requester_id) == ticket.requester_id)
                .where(col(RequesterContact.kind) == ContactKind.EMAIL)
                .where(col(RequesterContact.value) == address.lower())
                .values(undeliverable=True)
            )
        await self.tickets.attach_message(
            routing.session, routing.ticket, routing.row, SYSTEM, "bounce_received"
        )
        return False


class HoldAutoGenerated:
    def __init__(self, tickets: TicketService) -> None:
        self.tickets = tickets

    async def __call__(self, routing: Routing) -> bool:
        if not routing.inbound.auto_generated:
            return True
        routing.outcome = "auto-generated"
        if routing.ticket is not None:
            await self.tickets.attach_message(
                routing.session, routing.ticket, routing.row, SYSTEM, "auto_reply_received"
            )
        return False


class DecideAcknowledgement:
    """May we answer this sender? Not more than `per_hour` times an hour: a flood (or a loop
    with a mail system that does not mark its replies) gets no flood back. The responder
    sends acknowledgements only for messages marked here."""

    def __init__(self, clock: Clock, per_hour: int) -> None:
        self.clock = clock
        self.per_hour = per_hour

    async def prepare(self, session: AsyncSession, batch: Batch, senders: set[str]) -> None:
        """The batch's senders' acknowledgements of the last hour, in one query."""
        if not senders:
            return
        found = await session.exec(
            select(Message.sender, func.count(col(Message.id)))
            .where(col(Message.sender).in_(sorted(senders)))
            .where(col(Message.acknowledge).is_(True))
            .where(col(Message.received_at) >= self._since())
            .group_by(col(Message.sender))
        )
        batch.acknowledged_before = {s: 0 for s in senders} | {
            sender: count for sender, count in found.all() if sender
        }

    async def __call__(self, routing: Routing) -> bool:
        sender = routing.inbound.sender
        if not sender:
            return True
        if sender in routing.batch.acknowledged_before:
            recent = routing.batch.acknowledgements(sender)
        else:  # routed alone, or a sender found later (UseEnvelopeSender)
            found = await routing.session.exec(
                select(func.count(col(Message.id)))
                .where(Message.sender == sender)
                .where(col(Message.acknowledge).is_(True))
                .where(col(Message.received_at) >= self._since())
            )
            recent = found.one()
        routing.row.acknowledge = recent < self.per_hour
        return True

    def _since(self) -> dt.datetime:
        return self.clock.now() - dt.timedelta(hours=1)
