"""Mail that could not be routed (no address at all, a parse failure, too large): what the DPO
can do with each, so nothing stays stuck without a command.

    show(n)                 its headers and decoded text, control characters escaped
    open_ticket(n, email)   route it as if it came from `email` (the DPO found out who wrote)
    dismiss(n, reason)      nothing to do; the reason is kept on the message
"""

from __future__ import annotations

import email
import email.header
import email.policy
from dataclasses import dataclass, field

from sqlmodel import select

from rightsdesk.clock import Clock
from rightsdesk.db import Database
from rightsdesk.models import Message, Ticket
from rightsdesk.outbound import can_mail
from rightsdesk.pipeline import IntakePipeline
from rightsdesk.tickets import TicketError, TicketService
from rightsdesk.views import printable

_STUCK = ("failed", "too_large", "stored")


@dataclass(frozen=True)
class StrayView:
    id: int
    parse_status: str
    parse_error: str | None
    sender: str | None
    envelope_from: str | None
    received_at: str
    raw_bytes: int
    headers: list[tuple[str, str]] = field(default_factory=list)  # name, decoded value
    text: str = ""
    ticket: str | None = None


class StrayMail:
    def __init__(
        self, db: Database, clock: Clock, pipeline: IntakePipeline, tickets: TicketService
    ) -> None:
        self.db = db
        self.clock = clock
        self.pipeline = pipeline
        self.tickets = tickets

    async def _row(self, row_id: int) -> tuple[Message, str | None]:
        async with self.db.reading() as session:
            row = await session.get(Message, row_id)
            if row is None or row.direction != "in":
                raise TicketError(f"no received message #{row_id}")
            ticket = await session.get(Ticket, row.ticket_id) if row.ticket_id else None
            return row, ticket.public_id if ticket else None

    async def show(self, row_id: int) -> StrayView:
        row, ticket = await self._row(row_id)
        raw = row.raw or b""
        headers: list[tuple[str, str]] = []
        text = row.text or ""
        if raw and row.channel == "email":
            parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
            for name, value in parsed.items():
                headers.append((printable(name), printable(_decoded(value))))
            if not text:
                parser = self.pipeline.parsers.get(row.channel)
                try:
                    text = parser(raw).full_text if parser else ""
                except Exception:  # a message that cannot be parsed is shown as bytes
                    text = raw.split(b"\r\n\r\n", 1)[-1].decode("utf-8", "replace")
        elif raw:
            text = raw.decode("utf-8", "replace")
        return StrayView(
            id=row_id,
            parse_status=row.parse_status,
            parse_error=row.parse_error,
            sender=row.sender,
            envelope_from=row.envelope_from,
            received_at=row.received_at.isoformat(),
            raw_bytes=row.raw_size,
            headers=headers,
            text=printable(text, multiline=True),
            ticket=ticket,
        )

    async def open_ticket(self, row_id: int, address: str, actor: str) -> str:
        """Route a stuck mail as if `address` had sent it (when it names no sender of its
        own); returns the ticket it opened or joined."""
        address = address.strip().lower()
        if "@" not in address or not can_mail(address):
            raise TicketError(f"{address!r} is not an address we can write to")
        row, _ = await self._row(row_id)
        if row.parse_status not in _STUCK:
            raise TicketError(f"message #{row_id} is {row.parse_status}, not waiting or failed")
        outcome = await self.pipeline.retry(row_id, sender=address)
        async with self.db.transaction() as session:
            ticket_id = (
                await session.exec(select(Message.ticket_id).where(Message.id == row_id))
            ).one()
            if ticket_id is None:
                raise TicketError(f"message #{row_id} opened no ticket: {outcome}")
            ticket = await session.get_one(Ticket, ticket_id)
            locked = await self.tickets.load_in(session, ticket.public_id, lock=True)
            await self.tickets.note_in(
                session,
                locked,
                actor,
                "sender_given",
                {"message": row_id, "address": address, "outcome": outcome},
            )
            return locked.public_id

    async def dismiss(self, row_id: int, reason: str, actor: str) -> None:
        if not reason.strip():
            raise TicketError("a reason for the dismissal is required")
        async with self.db.transaction() as session:
            row = await session.get(Message, row_id, with_for_update=True)
            if row is None or row.direction != "in":
                raise TicketError(f"no received message #{row_id}")
            if row.parse_status not in _STUCK:
                raise TicketError(f"message #{row_id} is {row.parse_status}: nothing to dismiss")
            now = self.clock.now()
            row.details = {
                **row.details,
                "dismissed": {"reason": reason.strip(), "by": actor, "at": now.isoformat()},
            }
            row.parse_status = "dismissed"
            row.processed_at = now
            session.add(row)


def _decoded(value: str) -> str:
    """A header as a person reads it; the raw value when its encoded words are broken."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return value
