"""What a requester writes after their request: nothing goes unnoticed.

`TicketService.attach_message` marks a ticket `unread` whenever its requester writes, on any
channel, until a person acts on it. For a message that joined a ticket, `FollowUps.read` adds:
  - the request types it asks for that the ticket lacks ("also delete my second address"),
    kept as `suggested_types` for the DPO to decide on, never added silently;
  - a mail at once to the assignee (when it is an address), else the DPO, when the requester
    writes again on finished work, or asks for something new.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.config import Settings
from rightsdesk.identifiers import find_code
from rightsdesk.models import Message, RequestType, Ticket, TicketStatus
from rightsdesk.outbound import Outbox, can_mail
from rightsdesk.tickets import FINISHED_STATUSES, TicketService
from rightsdesk.withdrawal_words import says_cancel, says_undo

if TYPE_CHECKING:
    from rightsdesk.pipeline import Classification

log = logging.getLogger("rightsdesk.followups")

SYSTEM = "system:followups"
# Types a follow-up cannot add: any message "asks a question" or "is not a request".
_NOT_NEW_ASKS = frozenset({RequestType.INQUIRY, RequestType.NOT_RIGHTS_REQUEST})
_DONE = FINISHED_STATUSES | {TicketStatus.CLOSED}


def worth_reading(text: str) -> str | None:
    """What of a follow-up's new text the classifier reads (None: nothing to classify).

    The new text alone: a reply's subject is mostly our own ("Re: [PRIV-…] …"). Classified
    by the pipeline before its write transaction (`ReadFollowUp`), never inside it: a
    classification holds no lock, and the routing transaction holds them all."""
    said = text.strip()
    if not said or says_cancel(said) or says_undo(said) or find_code(said) == said:
        return None  # handled by the desk itself: a withdrawal, its undo, a verification code
    return said


def new_asks(ticket: Ticket, found: Classification | None) -> list[RequestType]:
    """The request types `found` (the follow-up's classification) asks for that the ticket
    does not have."""
    if found is None:
        return []
    have = set(ticket.types)
    return [t for t in found.types if t not in have and t not in _NOT_NEW_ASKS]


class FollowUps:
    def __init__(self, settings: Settings, tickets: TicketService, outbox: Outbox) -> None:
        self.settings = settings
        self.tickets = tickets
        self.outbox = outbox

    async def read(
        self,
        session: AsyncSession,
        ticket: Ticket,
        message: Message,
        found: Classification | None,
    ) -> Sequence[RequestType]:
        """A message of the requester's joined `ticket` (in the caller's transaction).
        `found`: what the classifier read in its new text (`worth_reading`), found before the
        transaction began; None when there was nothing to read."""
        if message.direction != "in" or message.sender != ticket.contact_value:
            return []
        new = new_asks(ticket, found)
        known = set(ticket.suggested_types)
        added = [t for t in new if t.value not in known]
        if added:
            ticket.suggested_types = [
                t.value for t in RequestType if t.value in known | {a.value for a in added}
            ]
            ticket.needs_review = True
            session.add(ticket)
            await self.tickets.note_in(
                session,
                ticket,
                SYSTEM,
                "types_suggested",
                {"message": message.id, "suggested_types": [t.value for t in added]},
            )
        finished = TicketStatus(ticket.status) in _DONE
        if added or (finished and self.tickets.newly_unread(session, ticket)):
            await self._tell_staff(session, ticket, finished, added)
        return added

    async def _tell_staff(
        self, session: AsyncSession, ticket: Ticket, finished: bool, added: list[RequestType]
    ) -> None:
        assignee = ticket.assignee or ""
        recipients = [assignee] if "@" in assignee and can_mail(assignee) else []
        recipients = recipients or list(self.settings.desk.dpo_emails)
        asked: list[RequestType | str] = [*added]
        names = self.outbox.templates.type_names
        rendered = self.outbox.templates.render(
            "requester_wrote",
            None,  # our own people read both languages
            {
                "ticket_id": ticket.public_id,
                "status": ticket.status,
                "assignee": ticket.assignee or "",
                "finished": finished,
                "suggested": {  # named for staff, not in the requester's words (您的…)
                    "zh": names(asked, "zh", "staff_type") if added else "",
                    "en": names(asked, "en", "staff_type") if added else "",
                },
            },
        )
        await self.outbox.enqueue_internal_to_all(
            session,
            recipients,
            kind="requester_wrote",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            ticket_id=ticket.id,
        )
        log.info("%s: the requester wrote; %d colleague(s) told", ticket.public_id, len(recipients))
