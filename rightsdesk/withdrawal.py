"""Withdrawals by mail: asked, confirmed, undoable for a while, then final.

A `From:` header proves nothing, so a "cancel" by mail counts only with proof (see
`rightsdesk.pipeline.HandleReply`), and even then it is not final at once: the ticket keeps its
status, the requester's known address is told (with how to undo it), and only after
`desk.withdrawal_undo_days` does the ticket become `cancelled` (a scheduler job). Until then a
reply "undo" / "撤销" (with the same proof) or `rightsdesk tickets undo-withdrawal` undoes it.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.config import Settings
from rightsdesk.models import ACTIVE_STATUSES, Account, ContactKind, Requester, Ticket, TicketStatus
from rightsdesk.outbound import Outbox, can_mail
from rightsdesk.tickets import TicketError, TicketService

log = logging.getLogger("rightsdesk.withdrawal")

SYSTEM = "system:withdrawal"


def is_pending(ticket: Ticket) -> bool:
    return ticket.withdrawal_final_at is not None


class Withdrawals:
    def __init__(
        self, settings: Settings, clock: Clock, tickets: TicketService, outbox: Outbox
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.tickets = tickets
        self.outbox = outbox

    async def request_in(self, session: AsyncSession, ticket: Ticket, actor: str) -> bool:
        """A proven withdrawal: pending until final, confirmed to the requester's known
        address. False when there was nothing to withdraw (finished, or pending already)."""
        if TicketStatus(ticket.status) not in ACTIVE_STATUSES or is_pending(ticket):
            return False
        now = self.clock.now()
        days = self.settings.desk.withdrawal_undo_days
        if days == 0:
            await self._finish(session, ticket, actor)
            return True
        ticket.withdrawal_requested_at = now
        ticket.withdrawal_final_at = now + dt.timedelta(days=days)
        final_on = self.tickets.policy.local_day(ticket.withdrawal_final_at)
        await self.tickets.note_in(
            session, ticket, actor, "withdrawal_requested", {"final_on": final_on.isoformat()}
        )
        await self._tell(session, ticket, "withdrawal_pending", {"final_on": final_on.isoformat()})
        return True

    async def undo_in(self, session: AsyncSession, ticket: Ticket, actor: str) -> bool:
        if not is_pending(ticket):
            return False
        ticket.withdrawal_requested_at = None
        ticket.withdrawal_final_at = None
        await self.tickets.note_in(session, ticket, actor, "withdrawal_undone", {})
        await self._tell(session, ticket, "withdrawal_undone", {})
        return True

    async def undo(self, public_id: str, actor: str) -> Ticket:
        """The DPO's undo (the requester phoned, say)."""
        async with self.tickets.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            if not await self.undo_in(session, ticket, actor):
                raise TicketError(f"{ticket.public_id} has no withdrawal waiting to become final")
            return ticket

    async def finalize_due(self) -> list[str]:
        """Withdrawals whose undo window has passed become final: the ticket is cancelled and
        the requester gets the usual cancellation notice. Returns the ticket ids."""
        now = self.clock.now()
        async with self.tickets.db.reading() as session:
            due = (
                await session.exec(
                    select(Ticket.public_id).where(col(Ticket.withdrawal_final_at) <= now)
                )
            ).all()
        done: list[str] = []
        for public_id in due:
            async with self.tickets.db.transaction() as session:
                ticket = await self.tickets.load_in(session, public_id, lock=True)
                if ticket.withdrawal_final_at is None or ticket.withdrawal_final_at > now:
                    continue  # undone meanwhile
                await self._finish(session, ticket, SYSTEM)
                done.append(public_id)
        if done:
            log.info("withdrawals final: %s", ", ".join(done))
        return done

    async def _finish(self, session: AsyncSession, ticket: Ticket, actor: str) -> None:
        ticket.withdrawal_requested_at = None
        ticket.withdrawal_final_at = None
        if TicketStatus(ticket.status) not in ACTIVE_STATUSES:
            # The DPO finished it meanwhile: their decision stands.
            await self.tickets.note_in(session, ticket, actor, "withdrawal_dropped", {})
            return
        await self.tickets.transition_in(
            session,
            ticket.public_id,
            TicketStatus.CANCELLED,
            actor,
            cancel_reason="withdrawn by the requester",
        )

    async def _tell(
        self, session: AsyncSession, ticket: Ticket, kind: str, context: dict[str, str]
    ) -> None:
        """To the account's registered address when the requester proved one, else to the
        address the request came from: never to whoever wrote the withdrawal."""
        if ticket.contact_kind != ContactKind.EMAIL:
            return
        requester = await session.get_one(Requester, ticket.requester_id)
        to = ticket.contact_value
        if requester.account_id is not None:
            account = await session.get(Account, requester.account_id)
            if account is not None:
                to = account.email
        if not can_mail(to):
            return
        await self.outbox.enqueue(
            session,
            ticket=ticket,
            kind=kind,
            to=to,
            to_name=requester.name,
            lang=requester.language,
            context=context,
        )
