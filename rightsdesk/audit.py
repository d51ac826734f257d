"""The audit trail as a hash chain per ticket.

Each event stores the SHA-256 of the previous event of its ticket and its own hash over a
canonical JSON form of everything it says. Editing, deleting or reordering a stored event breaks
the chain at that event, and `verify_chains` names it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlmodel import and_, col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

# The canonical form lives in the pack checker, which must stay standard-library only (it is
# copied into every evidence pack): one definition serves the trail and the regulator's check.
from rightsdesk.evidence_check import GENESIS_HASH as GENESIS_HASH
from rightsdesk.evidence_check import event_hash as event_hash
from rightsdesk.models import Event, Ticket

_LAST_LINKS = "rightsdesk.audit_last_links"


async def append_event(
    session: AsyncSession,
    ticket: Ticket,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Event:
    """Append an event to the ticket's chain. The caller holds the ticket's row lock.

    The (ticket_id, seq) unique constraint is the backstop: two writers racing for the same
    link make one transaction fail instead of forking the chain.
    """
    assert ticket.id is not None
    # The link appended last in this transaction (we hold the ticket's lock) needs no query.
    links: dict[int, tuple[int, str]] = session.info.setdefault(_LAST_LINKS, {})
    last = links.get(ticket.id)
    if last is None and ticket.audit_head:  # a new ticket has no chain yet
        last = (
            await session.exec(
                select(Event.seq, Event.hash)
                .where(Event.ticket_id == ticket.id)
                .order_by(col(Event.seq).desc())
                .limit(1)
            )
        ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    event = Event(
        **link_values(
            ticket.id,
            ticket.public_id,
            seq=seq,
            prev_hash=prev_hash,
            at=at,
            actor=actor,
            action=action,
            before=before,
            after=after,
        )
    )
    session.add(event)
    links[ticket.id] = (seq, event.hash)
    ticket.audit_head = event.hash
    session.add(ticket)
    return event


def link_values(
    ticket_id: int,
    public_id: str,
    *,
    seq: int,
    prev_hash: str,
    at: dt.datetime,
    actor: str,
    action: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The row values of the event that follows `prev_hash` (GENESIS_HASH: the first) in a
    ticket's chain: `append_event` makes it an Event, the pipeline's batches insert many at
    once (rightsdesk.pipeline.bulk) and need no ORM object for a row they only insert."""
    before, after = _jsonable(before or {}), _jsonable(after or {})
    return {
        "ticket_id": ticket_id,
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "before": before,
        "after": after,
        "prev_hash": prev_hash,
        "hash": event_hash(
            public_id=public_id,
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            before=before,
            after=after,
            prev_hash=prev_hash,
        ),
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through JSON so the hash is computed over exactly what the database will hold.
    encoded: dict[str, Any] = json.loads(json.dumps(values, default=_encode, ensure_ascii=False))
    return encoded


def _encode(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value)
    raise TypeError(f"cannot record {type(value).__name__} in the audit trail")


@dataclass(frozen=True)
class BrokenLink:
    public_id: str
    seq: int
    event_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"event #{self.seq}" + (f" (id {self.event_id})" if self.event_id else "")
        return f"{self.public_id} {where}: {self.reason}"


@dataclass
class AuditReport:
    tickets: int = 0
    events: int = 0
    broken: BrokenLink | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


async def verify_chains(session: AsyncSession, batch_size: int = 5000) -> AuditReport:
    """Walk every ticket's chain in order; stop at the first broken link."""
    report = AuditReport()
    report.tickets = (await session.exec(select(func.count()).select_from(Ticket))).one()
    bare = (
        await session.exec(
            select(Ticket.public_id)
            .where(~select(Event.id).where(Event.ticket_id == Ticket.id).exists())
            .order_by(col(Ticket.id))
            .limit(1)
        )
    ).first()
    if bare is not None:
        report.broken = BrokenLink(bare, 1, None, "the ticket has no audit events at all")
        return report
    current: tuple[str, str] | None = None  # (public_id, audit_head) of the chain being walked
    expected_seq, expected_prev = 1, GENESIS_HASH
    async for event, public_id, head in _events_in_chain_order(session, batch_size):
        if current is None or public_id != current[0]:
            if current is not None and (broken := _check_end(current, expected_seq, expected_prev)):
                report.broken = broken
                return report
            current, expected_seq, expected_prev = (public_id, head), 1, GENESIS_HASH
        report.events += 1
        reason = _check_link(event, public_id, expected_seq, expected_prev)
        if reason:
            report.broken = BrokenLink(public_id, expected_seq, event.id, reason)
            return report
        expected_seq, expected_prev = event.seq + 1, event.hash
    if current is not None:
        report.broken = _check_end(current, expected_seq, expected_prev)
    return report


def _check_end(chain: tuple[str, str], next_seq: int, last_hash: str) -> BrokenLink | None:
    public_id, head = chain
    if head != last_hash:
        return BrokenLink(
            public_id, next_seq, None, "the chain ends before the ticket's newest event (cut short)"
        )
    return None


def _check_link(event: Event, public_id: str, expected_seq: int, expected_prev: str) -> str | None:
    if event.seq != expected_seq:
        return f"expected event #{expected_seq}, found #{event.seq} (an event is missing)"
    if event.prev_hash != expected_prev:
        return "prev_hash does not match the previous event (an event was removed or replaced)"
    recomputed = event_hash(
        public_id=public_id,
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        before=event.before,
        after=event.after,
        prev_hash=event.prev_hash,
    )
    if recomputed != event.hash:
        return "content does not match its hash (the event was edited)"
    return None


async def _events_in_chain_order(
    session: AsyncSession, batch_size: int
) -> AsyncIterator[tuple[Event, str, str]]:
    # Keyset pagination: constant memory however long the trail grows.
    after: tuple[int, int] = (0, 0)
    while True:
        rows = (
            await session.exec(
                select(Event, Ticket.public_id, Ticket.audit_head)
                .join(Ticket, col(Ticket.id) == col(Event.ticket_id))
                .where(
                    or_(
                        col(Event.ticket_id) > after[0],
                        and_(col(Event.ticket_id) == after[0], col(Event.seq) > after[1]),
                    )
                )
                .order_by(col(Event.ticket_id), col(Event.seq))
                .limit(batch_size)
            )
        ).all()
        if not rows:
            return
        for event, public_id, head in rows:
            yield event, public_id, head
        last = rows[-1][0]
        after = (last.ticket_id, last.seq)
