"""Anything else opens a ticket: the requester proves who they are, and is told."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from sqlmodel import col, select

from rightsdesk.languages import written_in
from rightsdesk.models import (
    ACTIVE_STATUSES,
    Channel,
    ContactKind,
    RequesterContact,
    RequestType,
    Ticket,
)
from rightsdesk.notices import DpoAlerts
from rightsdesk.outbound import Outbox, can_mail
from rightsdesk.pipeline.classification import Classification, ClassifiesOffLoop
from rightsdesk.pipeline.routing import (
    SYSTEM,
    Routing,
    storable,
)
from rightsdesk.tickets import Contact, NewTicket, TicketService
from rightsdesk.verification import Verifier

log = logging.getLogger("rightsdesk.intake")
# What a classifier's reading may suggest beside the requester's choice: a rights request.
_ASKS = frozenset(RequestType) - {RequestType.NOT_RIGHTS_REQUEST, RequestType.INQUIRY}
_KNOWN = frozenset(t.value for t in RequestType)


class OpenTicket:
    def __init__(
        self,
        tickets: TicketService,
        classifier: ClassifiesOffLoop,
        alerts: DpoAlerts | None = None,
    ) -> None:
        self.tickets = tickets
        self.classifier = classifier
        self.alerts = alerts

    async def __call__(self, routing: Routing) -> bool:
        inbound = routing.inbound
        if not inbound.sender:
            raise ValueError("no sender address to answer")
        found = routing.classification or await self.classifier.classify(
            inbound.subject, inbound.text
        )
        read = found
        chosen = [RequestType(t) for t in inbound.chosen_types if t in _KNOWN]
        if chosen:
            # The requester's own choice is the request; the classifier's reading of the text
            # only suggests what they did not tick (for a person to decide, as for a reply).
            found = replace(found, types=chosen, needs_review=False)
        elif inbound.cut:
            # A person reads what the parser left unread; the answer must not call it "not a
            # request" on the strength of the part that was read.
            found = replace(found, needs_review=True)
        suggested = [t.value for t in read.types if chosen and t not in chosen and t in _ASKS]
        if routing.batch.bulk and self.in_bulk(routing, found):
            # Opened with the batch's other new requests, in bulk (pipeline.bulk), which
            # routes it back here when it is not plain (the same request again, ...).
            routing.classification = found
            routing.batch.openings.append(routing)
            return False
        if not found.needs_review and await self._join_open_duplicate(routing, found.types):
            return False
        ticket = await self.tickets.open_in(
            routing.session, new_ticket(routing, found, read, suggested=bool(suggested)), SYSTEM
        )
        if suggested:
            ticket.suggested_types = suggested
            routing.session.add(ticket)
        routing.row.ticket_id = ticket.id
        if self.alerts is not None and RequestType.MINOR in ticket.types:
            await self.alerts.tell(routing.session, ticket, "urgent_minor")
        routing.ticket = ticket.public_id
        routing.opened = True
        routing.language = ticket.language
        routing.triage = found.needs_review
        routing.outcome = "opened"
        return True

    def in_bulk(self, routing: Routing, found: Classification) -> bool:
        """Plain mail that opens a ticket: nothing here needs the message alone (an alert,
        or a file too large to keep, which its acknowledgement names: rightsdesk.oversize)."""
        inbound = routing.inbound
        return (
            routing.row.channel == Channel.EMAIL
            and not (self.alerts is not None and RequestType.MINOR in found.types)
            and all(a.content is not None for a in inbound.attachments)
            and not inbound.chosen_types  # the requester's own types: recorded as theirs
            and not inbound.cut  # what the parser cut: recorded for the person who reads it
        )

    async def _join_open_duplicate(self, routing: Routing, types: Sequence[RequestType]) -> bool:
        """The same request again (same requester, same types) while theirs is open: it joins
        that ticket instead of opening another, so copies send no new codes and reset no
        limits. Nothing is answered: the open ticket's mail already went to the requester.
        Not for what the classifier is unsure of: its types say nothing about the request (it
        opens a ticket linked by `duplicate_of`; the rule: docs/architecture.md, "The same
        request again")."""
        sender = (routing.inbound.sender or "").lower()
        wanted = {str(t) for t in types}
        candidates = await routing.session.exec(
            select(Ticket)
            .join(RequesterContact, col(RequesterContact.requester_id) == col(Ticket.requester_id))
            .where(RequesterContact.kind == ContactKind.EMAIL)
            .where(RequesterContact.value == sender)
            .where(col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES]))
            .order_by(col(Ticket.id).desc())
        )
        for ticket in candidates.all():
            if {str(t) for t in ticket.types} != wanted:
                continue
            # Anyone can write From: the requester; say so unless something proved it.
            routing.row.unauthenticated_thread = not routing.inbound.auth.from_aligned
            await self.tickets.attach_message(
                routing.session, ticket.public_id, routing.row, SYSTEM, "duplicate_joined"
            )
            routing.ticket = ticket.public_id
            routing.threaded = True
            routing.outcome = f"same request again: joined {ticket.public_id}"
            return True
        return False


def new_ticket(
    routing: Routing,
    found: Classification,
    read: Classification | None = None,
    *,
    suggested: bool = False,
) -> NewTicket:
    """The ticket a new request opens (alone, or with its batch in bulk). `found`: its types
    and doubt, which are the classifier's reading `read` (the default) unless the requester
    chose the types (a form's boxes: then `read` is kept beside them, and `suggested` says the
    reading found more for a person to decide)."""
    inbound = routing.inbound
    assert inbound.sender
    read = read or found
    chosen = found is not read and bool(inbound.chosen_types)
    return NewTicket(
        channel=Channel(routing.row.channel),
        contact=Contact.email(inbound.sender),
        types=found.types,
        received_at=routing.row.received_at,
        subject=routing.row.subject or None,  # as stored (no NUL)
        requester_name=storable(inbound.sender_name),
        language=written_in(found.language, f"{inbound.subject}\n{inbound.text}"),
        needs_review=found.needs_review or suggested,
        classification={
            "scores": found.scores,
            "language": found.language,
            "needs_review": read.needs_review,
            "entities": found.entities,
            "model_version": found.model_version,
            # Who named the types: the requester (the form's boxes) or the classifier.
            "types_by": "requester" if chosen else "classifier",
            **({"parser_cut": True} if inbound.cut else {}),
            **({"classifier_types": [t.value for t in read.types]} if chosen else {}),
        },
    )


def acknowledgement_context(ticket: Ticket, triage: bool, step: str) -> dict[str, object]:
    """What the acknowledgement template is given. Only the classifier's doubt (`triage`)
    shows here. A flag set by verification (no account found) must not change the wording:
    that would tell a stranger. Not a rights request (and no doubt): the templates point to
    support and promise no deadline."""
    return {
        "types": [t.value for t in ticket.types],
        "triage": triage,
        "response_due": ticket.response_due.isoformat() if ticket.response_due else "",
        "completion_due": ticket.completion_due.isoformat() if ticket.completion_due else "",
        "step": step,
    }


NOT_MAILABLE = ", not acknowledged: the sender address cannot be mailed"


class StartVerification:
    """A new ticket: decide how the requester proves who they are, and start that."""

    def __init__(self, tickets: TicketService, verifier: Verifier) -> None:
        self.tickets = tickets
        self.verifier = verifier

    async def __call__(self, routing: Routing) -> bool:
        assert routing.ticket is not None
        assert routing.inbound.sender
        ticket = await self.tickets.load_in(routing.session, routing.ticket, lock=True)
        routing.step = await self.verifier.begin(
            routing.session,
            ticket,
            sender=routing.inbound.sender,
            sender_authenticated=routing.inbound.auth.from_aligned,
            language=routing.language,
        )
        return True


class Acknowledge:
    """Tell the requester we have their request: its id, what we understood, the due date,
    what happens next. Never echoes what they wrote (ID numbers and the like)."""

    def __init__(self, tickets: TicketService, outbox: Outbox) -> None:
        self.tickets = tickets
        self.outbox = outbox

    async def __call__(self, routing: Routing) -> bool:
        if not routing.row.acknowledge or routing.ticket is None or not routing.inbound.sender:
            return False
        ticket = await self.tickets.load_in(routing.session, routing.ticket)
        if not can_mail(routing.inbound.sender):
            routing.outcome += NOT_MAILABLE
            return False
        await self.outbox.enqueue(
            routing.session,
            ticket=ticket,
            kind="acknowledgement",
            to=routing.inbound.sender,
            to_name=routing.inbound.sender_name,
            lang=routing.language,
            context=acknowledgement_context(ticket, routing.triage, routing.step),
        )
        return False
