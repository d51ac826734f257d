"""Ticket rules: opening, the status machine, deadlines, assignment and the audit trail.

Every public method is one transaction that locks the ticket row, changes it, and appends one
audit event describing the change (who, what, when, before/after).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.audit import append_event
from rightsdesk.clock import Clock
from rightsdesk.db import Database
from rightsdesk.deadlines import DeadlinePolicy, Deadlines
from rightsdesk.extensions import check_extension
from rightsdesk.models import (
    ACTIVE_STATUSES,
    COMPLETION_TYPES,
    Message,
    Requester,
    RequesterContact,
    RequestType,
    Ticket,
    TicketStatus,
    TicketType,
)
from rightsdesk.ticket_errors import (
    DismissingRightsRequest,
    IllegalTransition,
    TicketConflict,
    TicketError,
    TicketNotFound,
    UnknownAssignee,
)
from rightsdesk.ticket_reads import TicketDetail, TicketFilter, TicketReads
from rightsdesk.ticket_writes import (
    LOCKED_TICKETS,
    NEWLY_UNREAD,
    Contact,
    NewTicket,
    apply_deadlines,
    deadline_fields,
    format_public_id,
    load_by_id,
    load_ticket,
    need_assignee,
    next_seq,
    open_duplicate,
    required,
    row_id,
    seen_by,
    unchanged_since,
    validated_types,
)

S = TicketStatus

# Every legal move of the status machine. Anything else is refused.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.AWAITING_VERIFICATION, S.OPEN, S.DENIED, S.CANCELLED, S.DISMISSED}),
    # CLOSED: the requester never proved who they are and the request lapsed.
    S.AWAITING_VERIFICATION: frozenset({S.OPEN, S.DENIED, S.CANCELLED, S.CLOSED, S.DISMISSED}),
    S.OPEN: frozenset(
        {S.IN_PROGRESS, S.AWAITING_VERIFICATION, S.RESOLVED, S.DENIED, S.CANCELLED, S.DISMISSED}
    ),
    S.IN_PROGRESS: frozenset({S.RESOLVED, S.DENIED, S.CANCELLED, S.DISMISSED}),
    S.RESOLVED: frozenset({S.CLOSED, S.REOPENED}),
    S.DENIED: frozenset({S.CLOSED, S.REOPENED}),
    S.CANCELLED: frozenset({S.CLOSED, S.REOPENED}),
    S.DISMISSED: frozenset({S.CLOSED, S.REOPENED}),
    S.CLOSED: frozenset({S.REOPENED}),
    S.REOPENED: frozenset({S.IN_PROGRESS, S.RESOLVED, S.DENIED, S.CANCELLED, S.DISMISSED}),
}
# Work that ended: the desk owes nothing more, and the ticket leaves the triage queue.
FINISHED_STATUSES = frozenset({S.RESOLVED, S.DENIED, S.CANCELLED, S.DISMISSED})


class Notices(Protocol):
    """Told of every change, inside its transaction: tells the requester what they must know."""

    async def ticket_changed(
        self, session: AsyncSession, ticket: Ticket, action: str, details: dict[str, Any]
    ) -> None: ...


class ResolveCheck(Protocol):
    """Asked, inside the transaction, before a ticket becomes resolved; raises TicketError to
    refuse (fulfilment: not while a system's part or a manual task is open)."""

    async def __call__(self, session: AsyncSession, ticket: Ticket) -> None: ...


class TicketService(TicketReads):
    def __init__(
        self, db: Database, clock: Clock, policy: DeadlinePolicy, notices: Notices | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.notices = notices
        self.resolve_checks: list[ResolveCheck] = []

    # ---- opening ---------------------------------------------------------------------------

    async def open(self, new: NewTicket, actor: str = "system") -> Ticket:
        async with self.db.transaction() as session:
            return await self.open_in(session, new, actor)

    async def open_in(self, session: AsyncSession, new: NewTicket, actor: str = "system") -> Ticket:
        """Open a ticket inside the caller's transaction (the intake pipeline's)."""
        types = validated_types(new.types)
        now = self.clock.now()
        requester = await self._find_or_create_requester(session, new)
        year = self.policy.local_day(new.received_at).year
        seq = await next_seq(session, year)
        ticket = Ticket(
            public_id=format_public_id(year, seq),
            year=year,
            seq=seq,
            status=S.NEW,
            channel=new.channel,
            requester_id=row_id(requester),
            contact_kind=new.contact.kind,
            contact_value=new.contact.value,
            subject=new.subject,
            language=new.language,
            received_at=new.received_at,
            needs_review=new.needs_review,
            classification=new.classification,
            created_at=now,
            updated_at=now,
            type_rows=[TicketType(type=t) for t in types],
        )
        if types == [RequestType.NOT_RIGHTS_REQUEST]:
            # A person confirms it (`tickets dismiss`) or relabels it; never closed unseen.
            ticket.needs_review = True
        duplicate = await open_duplicate(session, row_id(requester), types)
        if duplicate is not None:
            ticket.duplicate_of = duplicate
            ticket.needs_review = True
        if self.policy.settings.clock_starts == "receipt":
            self._start_clock(ticket, new.received_at)
        session.add(ticket)
        await session.flush()
        # Created in this transaction: nobody else can see it, as good as locked.
        session.info.setdefault(LOCKED_TICKETS, {})[ticket.public_id] = ticket
        if new.text is not None:
            session.add(
                Message(
                    ticket_id=ticket.id,
                    direction="in",
                    channel=new.channel,
                    sender=new.contact.value,
                    subject=new.subject,
                    text=new.text,
                    received_at=new.received_at,
                    processed_at=now,
                )
            )
        await append_event(
            session,
            ticket,
            at=now,
            actor=actor,
            action="opened",
            after={
                "status": ticket.status,
                "types": types,
                "channel": ticket.channel,
                **deadline_fields(ticket),
                **({"duplicate_of": duplicate} if duplicate is not None else {}),
            },
        )
        return ticket

    async def attach_message(
        self,
        session: AsyncSession,
        public_id: str,
        message: Message,
        actor: str = "system",
        action: str = "message_received",
    ) -> Ticket:
        """Put a stored message on a ticket, inside the caller's transaction, with an event."""
        ticket = await load_ticket(session, public_id, lock=True)
        if ticket.merged_into is not None:  # merged: its thread continues on the other ticket
            ticket = await load_by_id(session, ticket.merged_into)
        message.ticket_id = ticket.id
        session.add(message)
        detail: dict[str, Any] = {"message": message.id, "channel": message.channel}
        if message.auto_generated:
            detail["auto_generated"] = message.auto_generated
        elif message.direction == "in" and message.sender == ticket.contact_value:
            # The requester wrote: unread until a person acts on the ticket.
            if not ticket.unread:
                ticket.unread = True
                ticket.unread_since = self.clock.now()
                session.info.setdefault(NEWLY_UNREAD, set()).add(ticket.id)
            detail["unread"] = True
        return await self._record(session, ticket, actor, action, {}, detail)

    def newly_unread(self, session: AsyncSession, ticket: Ticket) -> bool:
        """Whether this transaction is the one that made the ticket unread."""
        return ticket.id in session.info.get(NEWLY_UNREAD, set())

    def answered_by_desk(self, session: AsyncSession, ticket: Ticket) -> None:
        """The message this transaction attached was the desk's own business (a verification
        code, a withdrawal or its undo), answered by the desk: it leaves the ticket as read as
        it was, so `unread` keeps meaning "a person should read this"."""
        newly = session.info.get(NEWLY_UNREAD, set())
        if ticket.id in newly:
            newly.discard(ticket.id)
            ticket.unread = False
            ticket.unread_since = None
            session.add(ticket)

    async def find_in(self, session: AsyncSession, public_id: str) -> Ticket | None:
        try:
            return await load_ticket(session, public_id)
        except TicketNotFound:
            return None

    async def _find_or_create_requester(self, session: AsyncSession, new: NewTicket) -> Requester:
        query = (
            select(Requester)
            .join(RequesterContact)
            .where(RequesterContact.kind == new.contact.kind)
            .where(RequesterContact.value == new.contact.value)
        )
        found = (await session.exec(query)).first()
        if found is not None:
            if new.language and found.language != new.language:
                found.language = new.language
                session.add(found)
            return found
        try:
            # A savepoint: two first messages from one new address may race for the contact.
            async with session.begin_nested():
                requester = Requester(
                    name=new.requester_name,
                    language=new.language,
                    created_at=self.clock.now(),
                )
                session.add(requester)
                await session.flush()
                contact = RequesterContact(
                    requester_id=row_id(requester), kind=new.contact.kind, value=new.contact.value
                )
                session.add(contact)
                await session.flush()
        except IntegrityError:
            return (await session.exec(query)).one()
        return requester

    # ---- reading (the rest: rightsdesk.ticket_reads) ---------------------------------------

    async def get(self, public_id: str) -> Ticket:
        async with self.db.transaction() as session:
            return await load_ticket(session, public_id)

    # ---- the status machine ----------------------------------------------------------------

    async def request_verification(self, public_id: str, actor: str) -> Ticket:
        return await self._transition(public_id, S.AWAITING_VERIFICATION, actor)

    async def mark_verified(self, public_id: str, actor: str, note: str | None = None) -> Ticket:
        now = self.clock.now()
        return await self._transition(
            public_id,
            S.OPEN,
            actor,
            verified_at=now,
            verification="verified",
            note=note,
            action="verified",
        )

    async def start(self, public_id: str, actor: str) -> Ticket:
        return await self._transition(public_id, S.IN_PROGRESS, actor)

    async def resolve(self, public_id: str, actor: str, reply: str) -> Ticket:
        """`reply`: what the requester reads in the resolved notice (Answers.resolve adds the
        team's own note to it)."""
        return await self._transition(
            public_id, S.RESOLVED, actor, resolution_note=required(reply, "a resolution reply")
        )

    async def deny(self, public_id: str, actor: str, reason: str) -> Ticket:
        # PIPL Art. 50: a refusal must give its reasons.
        return await self._transition(
            public_id, S.DENIED, actor, denial_reason=required(reason, "a reason for the denial")
        )

    async def cancel(self, public_id: str, actor: str, reason: str | None = None) -> Ticket:
        return await self._transition(public_id, S.CANCELLED, actor, cancel_reason=reason)

    async def dismiss(
        self, public_id: str, actor: str, reason: str, *, despite_types: bool = False
    ) -> Ticket:
        """Not a request about personal information: closed in one step, out of triage.

        A ticket labelled with any rights type is refused (DismissingRightsRequest) unless
        `despite_types`: the person then confirmed it, and the event records the override
        with the types it had."""
        reason = required(reason, "a reason for the dismissal")
        async with self.db.transaction() as session:
            ticket = await load_ticket(session, public_id, lock=True)
            rights = [t for t in ticket.types if t is not RequestType.NOT_RIGHTS_REQUEST]
            if rights and not despite_types:
                raise DismissingRightsRequest(ticket.public_id, rights)
            details = {"despite_types": [str(t) for t in rights]} if rights else {}
            return await self.transition_in(
                session, public_id, S.DISMISSED, actor, details=details, dismissal_reason=reason
            )

    async def close(self, public_id: str, actor: str) -> Ticket:
        return await self._transition(public_id, S.CLOSED, actor)

    async def reopen(self, public_id: str, actor: str, reason: str) -> Ticket:
        return await self._transition(
            public_id, S.REOPENED, actor, note=required(reason, "a reason to reopen")
        )

    async def _transition(
        self,
        public_id: str,
        to: TicketStatus,
        actor: str,
        *,
        action: str | None = None,
        note: str | None = None,
        **fields: Any,
    ) -> Ticket:
        async with self.db.transaction() as session:
            return await self.transition_in(
                session, public_id, to, actor, action=action, note=note, **fields
            )

    async def transition_in(
        self,
        session: AsyncSession,
        public_id: str,
        to: TicketStatus,
        actor: str,
        *,
        action: str | None = None,
        note: str | None = None,
        details: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Ticket:
        """Move a ticket along the status machine inside the caller's transaction.
        `details`: said in the audit event (beside the changed fields), set on no column."""
        now = self.clock.now()
        ticket = await load_ticket(session, public_id, lock=True)
        current = TicketStatus(ticket.status)
        if to not in TRANSITIONS[current]:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
            raise IllegalTransition(
                f"{public_id} is {current}; it cannot become {to} (from {current}: {allowed})"
            )
        if to is S.RESOLVED:
            for check in self.resolve_checks:
                await check(session, ticket)
        before = {"status": current, **deadline_fields(ticket)}
        before.update({name: getattr(ticket, name) for name in fields})
        if current is S.AWAITING_VERIFICATION and ticket.paused_since is not None:
            self._resume_clock(ticket, now)
        ticket.status = to
        for name, value in fields.items():
            setattr(ticket, name, value)
        if to is S.AWAITING_VERIFICATION and self.policy.settings.pause_while_waiting:
            ticket.paused_since = now if ticket.response_due is not None else None
        if to is S.OPEN and ticket.clock_started_at is None:
            self._start_clock(ticket, now)  # clock_starts == "verification"
        if to in FINISHED_STATUSES:
            ticket.finished_at = now
            ticket.needs_review = False
        elif to is S.CLOSED:
            ticket.closed_at = now
        elif to is S.REOPENED:
            ticket.finished_at = ticket.closed_at = None
        ticket.updated_at = now
        seen_by(ticket, actor)
        session.add(ticket)
        after = {"status": to, **deadline_fields(ticket), **fields, **(details or {})}
        if note:
            after["note"] = note
        event_action = action or to.value
        await append_event(
            session, ticket, at=now, actor=actor, action=event_action, before=before, after=after
        )
        if self.notices is not None:
            await self.notices.ticket_changed(
                session, ticket, event_action, {**after, "previous": current}
            )
        return ticket

    async def load_in(self, session: AsyncSession, public_id: str, *, lock: bool = False) -> Ticket:
        return await load_ticket(session, public_id, lock=lock)

    async def note_in(
        self,
        session: AsyncSession,
        ticket: Ticket,
        actor: str,
        action: str,
        details: dict[str, Any],
    ) -> Ticket:
        """An audit event that changes no field (a code sent, a wrong code, ...)."""
        return await self._record(session, ticket, actor, action, {}, details)

    # ---- other changes ---------------------------------------------------------------------

    async def assign(self, public_id: str, actor: str, assignee: str | None) -> Ticket:
        """To an enabled console user, by login name or by their email (kept as given: an
        address is where reminders go); None unassigns."""
        name = assignee.strip() if assignee and assignee.strip() else None
        async with self.db.transaction() as session:
            if name is not None:
                await need_assignee(session, name)
            ticket = await load_ticket(session, public_id, lock=True)
            before = {"assignee": ticket.assignee}
            ticket.assignee = name
            after = {"assignee": ticket.assignee}
            return await self._record(session, ticket, actor, "assigned", before, after)

    async def extend(
        self,
        public_id: str,
        actor: str,
        until: dt.date,
        reason: str,
        *,
        completion_until: dt.date | None = None,
        completion_reason: str | None = None,
    ) -> Ticket:
        """A later answer date, with its reason. An erasure or account deletion also has a
        completion date (30 days): an answer past it moves it too, and that needs its own
        date and reason (`completion_until`, `completion_reason`)."""
        reason = required(reason, "a reason for the extension")
        async with self.db.transaction() as session:
            ticket = await load_ticket(session, public_id, lock=True)
            if TicketStatus(ticket.status) not in ACTIVE_STATUSES:
                raise TicketError(f"{public_id} is {ticket.status}; only open work can be extended")
            check_extension(ticket, self.policy, self.today(), until, completion_until)
            completion = ticket.completion_due
            if completion_until is not None:
                completion_reason = required(
                    completion_reason, "a reason for extending the completion date"
                )
            before: dict[str, Any] = {
                "response_due": ticket.response_due,
                "extension_reason": ticket.extension_reason,
            }
            if ticket.original_response_due is None:
                ticket.original_response_due = ticket.response_due
            ticket.response_due = until
            ticket.extension_reason = reason
            after: dict[str, Any] = {"response_due": until, "extension_reason": reason}
            if completion_until is not None:
                before["completion_due"] = completion
                before["completion_extension_reason"] = ticket.completion_extension_reason
                if ticket.original_completion_due is None:
                    ticket.original_completion_due = completion
                ticket.completion_due = completion_until
                ticket.completion_extension_reason = completion_reason
                after["completion_due"] = completion_until
                after["completion_extension_reason"] = completion_reason
            await self._record(session, ticket, actor, "extended", before, after)
            if self.notices is not None:
                await self.notices.ticket_changed(session, ticket, "extended", after)
            return ticket

    async def relabel(self, public_id: str, actor: str, types: Iterable[RequestType]) -> Ticket:
        new_types = validated_types(types)
        async with self.db.transaction() as session:
            ticket = await load_ticket(session, public_id, lock=True)
            before: dict[str, Any] = {
                "types": [str(t) for t in ticket.types],
                "completion_due": ticket.completion_due,
                "needs_review": ticket.needs_review,
            }
            # Edit the rows in place: replacing the list would INSERT a kept type before its
            # DELETE and trip the primary key.
            ticket.type_rows = [row for row in ticket.type_rows if row.type in new_types]
            kept = {row.type for row in ticket.type_rows}
            ticket.type_rows.extend(
                TicketType(ticket_id=row_id(ticket), type=t) for t in new_types if t not in kept
            )
            # A DPO's labels are a human review: the ticket leaves the triage queue, and
            # what a later message suggested has been decided on.
            ticket.needs_review = False
            ticket.suggested_types = []
            if ticket.clock_started_at is not None and ticket.original_completion_due is None:
                ticket.completion_due = self.policy.compute(
                    ticket.clock_started_at, new_types
                ).completion_due
            after = {
                "types": new_types,
                "completion_due": ticket.completion_due,
                "needs_review": ticket.needs_review,
            }
            return await self._record(session, ticket, actor, "relabelled", before, after)

    async def recompute_provisional_deadlines(self, actor: str = "system") -> list[str]:
        """Recompute deadlines counted on a Mon-Fri guess, now that the calendar may know more.

        Returns the public ids whose dates changed.
        """
        changed: list[str] = []
        async with self.db.transaction() as session:
            candidates = (
                await session.exec(
                    select(Ticket.public_id)
                    .where(col(Ticket.deadlines_provisional).is_(True))
                    .where(col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES]))
                )
            ).all()
        for public_id in candidates:
            async with self.db.transaction() as session:
                ticket = await load_ticket(session, public_id, lock=True)
                if ticket.clock_started_at is None or not ticket.deadlines_provisional:
                    continue
                fresh = self.policy.compute(ticket.clock_started_at, ticket.types)
                before = deadline_fields(ticket)
                if ticket.original_response_due is None:  # the DPO's extension date stands
                    ticket.response_due = fresh.response_due
                if ticket.original_completion_due is None:  # so does an extended completion
                    ticket.completion_due = fresh.completion_due
                ticket.deadlines_provisional = fresh.provisional
                after = deadline_fields(ticket)
                if after != before:
                    await self._record(
                        session, ticket, actor, "deadlines_recomputed", before, after
                    )
                    changed.append(public_id)
        return changed

    async def _record(
        self,
        session: AsyncSession,
        ticket: Ticket,
        actor: str,
        action: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> Ticket:
        now = self.clock.now()
        ticket.updated_at = now
        seen_by(ticket, actor)
        session.add(ticket)
        await append_event(
            session, ticket, at=now, actor=actor, action=action, before=before, after=after
        )
        return ticket

    # ---- deadlines -------------------------------------------------------------------------

    def _start_clock(self, ticket: Ticket, at: dt.datetime) -> None:
        deadlines = self.policy.compute(at, ticket.types)
        ticket.clock_started_at = at
        apply_deadlines(ticket, deadlines)

    def _resume_clock(self, ticket: Ticket, now: dt.datetime) -> None:
        assert ticket.paused_since is not None
        assert ticket.response_due is not None
        current = Deadlines(
            started_on=self.policy.local_day(ticket.clock_started_at or ticket.received_at),
            response_due=ticket.response_due,
            completion_due=ticket.completion_due,
            provisional=ticket.deadlines_provisional,
        )
        apply_deadlines(ticket, self.policy.shift_for_pause(current, ticket.paused_since, now))
        ticket.paused_since = None


__all__ = [
    "COMPLETION_TYPES",
    "TRANSITIONS",
    "Contact",
    "DismissingRightsRequest",
    "IllegalTransition",
    "NewTicket",
    "TicketConflict",
    "TicketDetail",
    "TicketError",
    "TicketFilter",
    "TicketNotFound",
    "TicketService",
    "UnknownAssignee",
    "apply_deadlines",
    "deadline_fields",
    "format_public_id",
    "unchanged_since",
    "validated_types",
]
