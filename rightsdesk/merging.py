"""Two tickets that are one request: `merge(keep, other)` moves the other's messages onto the
kept ticket and copies its audit events there, then closes the other with a pointer.

Audit chains are never rewritten: the other ticket keeps its own chain (ending in
`merged_into`), and the kept ticket's chain gains one `merged_event` per copied event (the
original actor, action, time, before/after and hash inside), then a `merged` event. Both
chains still verify, and each says what happened.

The messages of a ticket nobody verified arrive flagged `unauthenticated_thread` (unless DKIM/
DMARC proved their sender): merging must not lend them the kept ticket's proof.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select, update

from rightsdesk.audit import append_event
from rightsdesk.models import Event, Message, RequestType, Ticket, TicketStatus
from rightsdesk.tickets import TicketError, TicketService


class TicketMerger:
    def __init__(self, tickets: TicketService) -> None:
        self.tickets = tickets

    async def merge(self, keep_id: str, other_id: str, actor: str) -> Ticket:
        if keep_id.strip().upper() == other_id.strip().upper():
            raise TicketError("a ticket cannot be merged into itself")
        now = self.tickets.clock.now()
        async with self.tickets.db.transaction() as session:
            # Locked in id order, so two merges of the same pair cannot deadlock.
            first, second = sorted([keep_id, other_id], key=lambda t: t.strip().upper())
            locked = {
                t.public_id: t
                for t in [
                    await self.tickets.load_in(session, first, lock=True),
                    await self.tickets.load_in(session, second, lock=True),
                ]
            }
            keep = locked[keep_id.strip().upper()]
            other = locked[other_id.strip().upper()]
            for ticket in (keep, other):
                if ticket.merged_into is not None:
                    raise TicketError(f"{ticket.public_id} was merged already")
            if keep.requester_id != other.requester_id:
                raise TicketError(
                    f"{keep.public_id} and {other.public_id} have different requesters: "
                    "merging would put one person's messages on another's ticket"
                )
            if other.verification != "verified":
                # A message's proof is its own: what opened a ticket nobody verified (a
                # forged From: perhaps) must not read as the verified requester's once it
                # sits on their ticket. It keeps "sender not verified" wherever it is shown.
                await session.exec(
                    update(Message)
                    .where(col(Message.ticket_id) == other.id)
                    .where(col(Message.direction) == "in")
                    .where(col(Message.sender_authenticated).is_(False))
                    .values(unauthenticated_thread=True)
                )
            moved = await session.exec(
                update(Message).where(col(Message.ticket_id) == other.id).values(ticket_id=keep.id)
            )
            events = (
                await session.exec(
                    select(Event).where(Event.ticket_id == other.id).order_by(col(Event.seq))
                )
            ).all()
            for event in events:
                await append_event(
                    session,
                    keep,
                    at=now,
                    actor=actor,
                    action="merged_event",
                    after={
                        "from": other.public_id,
                        "seq": event.seq,
                        "at": event.at.isoformat(),
                        "actor": event.actor,
                        "action": event.action,
                        "before": event.before,
                        "after": event.after,
                        "hash": event.hash,
                    },
                )
            before_keep: dict[str, Any] = {"suggested_types": list(keep.suggested_types)}
            have = {str(t) for t in keep.types} | set(keep.suggested_types)
            extra = {str(t) for t in other.types} - have
            if extra:  # the other ticket asked for more: the DPO decides, as for a follow-up
                keep.suggested_types = [
                    t.value for t in RequestType if t.value in set(keep.suggested_types) | extra
                ]
            await self.tickets.note_in(
                session,
                keep,
                actor,
                "merged",
                {
                    "merged": other.public_id,
                    "messages": moved.rowcount,
                    "events": len(events),
                    "suggested_types": keep.suggested_types,
                    "before": before_keep,
                },
            )
            before_other = {"status": other.status, "merged_into": None}
            other.merged_into = keep.id
            other.status = TicketStatus.CLOSED
            other.closed_at = now
            other.finished_at = other.finished_at or now
            other.needs_review = other.unread = False
            other.unread_since = None
            other.updated_at = now
            session.add(other)
            await append_event(
                session,
                other,
                at=now,
                actor=actor,
                action="merged_into",
                before=before_other,
                after={
                    "status": TicketStatus.CLOSED,
                    "merged_into": keep.public_id,
                    "messages_moved": moved.rowcount,
                },
            )
            return keep
