"""The write side under the ticket rules (rightsdesk.tickets), inside the caller's transaction: a
ticket loaded and row-locked once per transaction (`load_ticket`, with the console's conflict
check, `unchanged_since`), the year's gapless counter (`next_seq`), due dates (`apply_deadlines`,
`deadline_fields`), the request types a ticket may have (`validated_types`), what a new ticket
is made of (`Contact`, `NewTicket`) and its duplicate (`open_duplicate`). The pipeline's bulk
opening uses the same helpers, so both ways of opening write the same rows."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.deadlines import Deadlines
from rightsdesk.models import (
    ACTIVE_STATUSES,
    Channel,
    ContactKind,
    Requester,
    RequestType,
    Ticket,
    TicketCounter,
)
from rightsdesk.models_staff import StaffRole, StaffUser
from rightsdesk.ticket_errors import TicketConflict, TicketError, TicketNotFound, UnknownAssignee


def is_person(actor: str) -> bool:
    """A person of ours acted (the DPO, a colleague), not the desk itself or the requester."""
    return not (actor.startswith("system") or actor == "requester")


# Per task: the audit head each ticket must still have when an action locks it (see
# `unchanged_since`). A context variable, so every action method, present and future, is
# checked at the one place that locks a ticket, without a parameter on each of them.
_EXPECTED_HEADS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "rightsdesk_expected_heads", default=None
)


@contextmanager
def unchanged_since(public_id: str, audit_head: str) -> Iterator[None]:
    """Refuse the actions inside with TicketConflict if the ticket changed since its audit
    head was `audit_head` (what the console's form showed). Every change appends an audit
    event, so the head is the ticket's version. Checked once, when the first action locks it:
    a method that runs several transactions does not trip on its own first one."""
    expected = dict(_EXPECTED_HEADS.get() or {})
    expected[public_id.strip().upper()] = audit_head
    reset = _EXPECTED_HEADS.set(expected)
    try:
        yield
    finally:
        _EXPECTED_HEADS.reset(reset)


@dataclass(frozen=True)
class Contact:
    kind: ContactKind
    value: str

    @classmethod
    def email(cls, address: str) -> Contact:
        return cls(ContactKind.EMAIL, address.strip().lower())

    @classmethod
    def telegram(cls, chat_id: int | str) -> Contact:
        return cls(ContactKind.TELEGRAM, str(chat_id))

    @classmethod
    def phone(cls, number: str) -> Contact:
        return cls(ContactKind.PHONE, "".join(ch for ch in number if ch.isdigit() or ch == "+"))


@dataclass(frozen=True)
class NewTicket:
    channel: Channel
    contact: Contact
    types: Sequence[RequestType]
    received_at: dt.datetime
    subject: str | None = None
    requester_name: str | None = None
    language: str | None = None
    needs_review: bool = False
    classification: dict[str, Any] | None = None
    text: str | None = None  # the request as written, kept as the ticket's first message


def format_public_id(year: int, seq: int) -> str:
    return f"PRIV-{year}-{seq:06d}"


def seen_by(ticket: Ticket, actor: str) -> None:
    """A person's action on a ticket is their reading of what the requester wrote."""
    if is_person(actor):
        ticket.unread = False
        ticket.unread_since = None


async def open_duplicate(
    session: AsyncSession, requester_id: int, types: list[RequestType]
) -> int | None:
    """The requester's oldest active ticket with exactly these types, if any: what a new ticket
    is linked to (`duplicate_of`) when it did not join one (docs/architecture.md, "The same
    request again")."""
    wanted = {str(t) for t in types}
    candidates = (
        await session.exec(
            select(Ticket)
            .where(Ticket.requester_id == requester_id)
            .where(col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES]))
            .where(col(Ticket.merged_into).is_(None))
            .order_by(col(Ticket.id))
            .limit(20)
        )
    ).all()
    for candidate in candidates:
        if {str(t) for t in candidate.types} == wanted:
            return candidate.id
    return None


def apply_deadlines(ticket: Ticket, deadlines: Deadlines) -> None:
    """Set the ticket's due dates (TicketService, and the pipeline's bulk opening)."""
    ticket.response_due = deadlines.response_due
    ticket.completion_due = deadlines.completion_due
    ticket.deadlines_provisional = deadlines.provisional


def deadline_fields(ticket: Ticket) -> dict[str, Any]:
    """The due dates as an audit event records them."""
    return {
        "response_due": ticket.response_due,
        "completion_due": ticket.completion_due,
        "provisional": ticket.deadlines_provisional,
    }


# The roles that work tickets (staff.Staff.can_work); an auditor only reads.
WORKING_ROLES = frozenset({StaffRole.DPO.value, StaffRole.AGENT.value})
LOCKED_TICKETS = "rightsdesk.locked_tickets"
NEWLY_UNREAD = "rightsdesk.newly_unread"


async def need_assignee(session: AsyncSession, name: str) -> None:
    """Refuse a name no enabled console user who works tickets has (as login, or as email)."""
    found = (
        await session.exec(
            select(StaffUser.disabled, StaffUser.role).where(
                or_(StaffUser.name == name, func.lower(StaffUser.email) == name.lower())
            )
        )
    ).all()
    enabled = [role for disabled, role in found if not disabled]
    if not enabled:
        raise UnknownAssignee(name, disabled=bool(found))
    if not any(role in WORKING_ROLES for role in enabled):
        raise UnknownAssignee(name, disabled=False, cannot_work=True)


async def load_by_id(session: AsyncSession, ticket_id: int) -> Ticket:
    public_id = (await session.exec(select(Ticket.public_id).where(Ticket.id == ticket_id))).one()
    return await load_ticket(session, public_id, lock=True)


async def load_ticket(session: AsyncSession, public_id: str, *, lock: bool = False) -> Ticket:
    """The ticket, row-locked if asked. A ticket locked (or created) earlier in this same
    transaction is still locked and current: it is not read again."""
    key = public_id.strip().upper()
    held: dict[str, Ticket] = session.info.setdefault(LOCKED_TICKETS, {})
    if key in held:
        return held[key]
    query = select(Ticket).where(Ticket.public_id == key)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    ticket = (await session.exec(query)).first()
    if ticket is None:
        raise TicketNotFound(f"no ticket {public_id}")
    if lock:
        expected = _EXPECTED_HEADS.get()
        if expected is not None and key in expected and expected.pop(key) != ticket.audit_head:
            raise TicketConflict(
                f"{key} was changed by someone else since you opened it; "
                "nothing was done: look at the ticket again and repeat if still right"
            )
        held[key] = ticket
    return ticket


async def next_seq(session: AsyncSession, year: int) -> int:
    """Take the next number of `year`. The upsert holds the counter row's lock until commit,
    so concurrent opens queue here and never share a number."""
    bind = session.get_bind()
    insert = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(TicketCounter)
        .values(year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=["year"], set_={"last_seq": col(TicketCounter.last_seq) + 1}
        )
        .returning(col(TicketCounter.last_seq))
    )
    result = await session.exec(statement)
    return int(result.scalar_one())


def validated_types(types: Iterable[RequestType | str]) -> list[RequestType]:
    try:
        unique = {RequestType(t) for t in types}
    except ValueError as exc:
        known = ", ".join(t.value for t in RequestType)
        raise TicketError(f"{exc}; request types are: {known}") from None
    if not unique:
        raise TicketError("a ticket needs at least one request type")
    if RequestType.NOT_RIGHTS_REQUEST in unique and len(unique) > 1:
        raise TicketError("not_rights_request cannot be combined with other types")
    order = list(RequestType)
    return sorted(unique, key=order.index)


def required(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise TicketError(f"{what} is required")
    return text.strip()


def row_id(row: Ticket | Requester) -> int:
    assert row.id is not None, "flush before using the id"
    return row.id
