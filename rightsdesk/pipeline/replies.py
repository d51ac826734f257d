"""A reply joins its ticket, and what it says is read: a new ask, a code, a withdrawal."""

from __future__ import annotations

import logging

from rightsdesk.followups import FollowUps
from rightsdesk.pipeline.routing import (
    SYSTEM,
    Routing,
)
from rightsdesk.tickets import TicketService
from rightsdesk.verification import Verifier
from rightsdesk.withdrawal import Withdrawals
from rightsdesk.withdrawal_words import says_cancel, says_undo

log = logging.getLogger("rightsdesk.intake")


class AppendToThread:
    def __init__(self, tickets: TicketService) -> None:
        self.tickets = tickets

    async def __call__(self, routing: Routing) -> bool:
        if routing.ticket is None:
            return True
        ticket = await self.tickets.attach_message(
            routing.session, routing.ticket, routing.row, SYSTEM
        )
        if routing.inbound.cut:
            # The parser left part of this reply unread (its own limits): what the desk reads
            # in it (a code, a new ask) may not be all it says, so a person reads it whole.
            ticket.needs_review = True
            ticket.classification = {**(ticket.classification or {}), "parser_cut": True}
            routing.session.add(ticket)
            await self.tickets.note_in(
                routing.session, ticket, SYSTEM, "parser_cut", {"message": routing.row.id}
            )
        routing.threaded = True
        routing.outcome = "threaded"
        return True


class ReadFollowUp:
    """A reply of the requester's: a new ask in it becomes a suggestion on the ticket, and
    the assignee (else the DPO) hears at once of a reply on finished work."""

    def __init__(self, tickets: TicketService, followups: FollowUps) -> None:
        self.tickets = tickets
        self.followups = followups

    async def __call__(self, routing: Routing) -> bool:
        if routing.threaded and routing.row.ticket_id is not None:
            ticket = await self.tickets.load_in(routing.session, routing.ticket or "", lock=True)
            if ticket.id != routing.row.ticket_id:  # merged: read on the ticket it joined
                return True
            await self.followups.read(routing.session, ticket, routing.row, routing.follow_up)
        return True


class HandleReply:
    """A reply can carry a verification code, withdraw the request ("cancel" / "取消"), or
    take a withdrawal back ("undo" / "撤销").

    A `From:` header proves nothing and ticket ids are sequential, so a withdrawal or an undo
    counts only with proof that the requester wrote it: our signed Message-ID in
    In-Reply-To/References (they received our mail), or DKIM/DMARC aligned with From at a
    trusted server. Without it the mail stays on the ticket, flagged, and changes nothing. A
    code is its own proof (it went only to the registered address); its guesses are limited
    per ticket and per account, and wrong codes in unproven mail have their own budget
    (rightsdesk.verification)."""

    def __init__(
        self, tickets: TicketService, verifier: Verifier, withdrawals: Withdrawals
    ) -> None:
        self.tickets = tickets
        self.verifier = verifier
        self.withdrawals = withdrawals

    async def __call__(self, routing: Routing) -> bool:
        if not routing.threaded:
            return True
        assert routing.ticket is not None
        ticket = await self.tickets.load_in(routing.session, routing.ticket, lock=True)
        said = routing.inbound.text.strip()
        is_requester = routing.inbound.sender == ticket.contact_value
        cancel, undo = says_cancel(said), says_undo(said)
        proven = routing.proof == "reference" or routing.inbound.auth.from_aligned
        if is_requester and (cancel or undo):
            asked = "withdrawal" if cancel else "undo"
            if not proven:
                await self.tickets.note_in(
                    routing.session,
                    ticket,
                    SYSTEM,
                    "change_by_mail_refused",
                    {"message": routing.row.id, "asked": asked, "why": "no proof of the sender"},
                )
                routing.outcome = f"{asked} refused: no proof of the sender"
            elif cancel and await self.withdrawals.request_in(routing.session, ticket, "requester"):
                routing.outcome = "withdrawal pending"
                self.tickets.answered_by_desk(routing.session, ticket)
            elif undo and await self.withdrawals.undo_in(routing.session, ticket, "requester"):
                routing.outcome = "withdrawal undone"
                self.tickets.answered_by_desk(routing.session, ticket)
            return False
        checked = await self.verifier.check_reply(routing.session, ticket, said, proven=proven)
        if is_requester and routing.row.acknowledge:  # answers are rate limited too
            checked = await self.verifier.answer_code_reply(routing.session, ticket, said, checked)
        elif checked is not None and checked.just_locked:
            # A lock is answered whatever the per-sender limit (a forged flood may have used
            # it up): once per lock, so it is no flood itself.
            await self.verifier.tell_not_accepted(routing.session, ticket, checked)
        if checked is not None:
            routing.outcome = f"verification: {checked.outcome}"
            self.tickets.answered_by_desk(routing.session, ticket)
        return False
