"""What the requester is told when their ticket changes: one mail per change that matters."""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.config import Settings
from rightsdesk.models import ContactKind, Requester, RequesterContact, Ticket, TicketStatus
from rightsdesk.outbound import Outbox, can_mail

log = logging.getLogger("rightsdesk.notices")


class RequesterNotices:
    """Implements tickets.Notices by mail. (Chat notices arrive with the bot.)"""

    def __init__(self, settings: Settings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox

    def _kind(self, action: str, details: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        previous = details.get("previous")
        if action == "resolved":
            return "resolved", {"note": details.get("resolution_note", "")}
        if action == "denied":
            return "denied", {"reason": details.get("denial_reason", "")}
        if action == "cancelled":
            return "cancelled", {}
        if action == "extended":
            return "extended", {
                "reason": details["extension_reason"],
                "response_due": details["response_due"],
            }
        if action == "verified" and previous != TicketStatus.NEW:
            # Verified at intake is said in the acknowledgement; later, it gets its own mail.
            return "verified", {"response_due": details.get("response_due")}
        if action == "closed" and previous == TicketStatus.AWAITING_VERIFICATION:
            return "auto_closed", {"days": self.settings.verification.close_after_days}
        return None

    async def ticket_changed(
        self, session: AsyncSession, ticket: Ticket, action: str, details: dict[str, Any]
    ) -> None:
        chosen = self._kind(action, details)
        if chosen is None or ticket.contact_kind != ContactKind.EMAIL:
            return
        if not can_mail(ticket.contact_value):
            log.info("%s: no %s mail, the address cannot be mailed", ticket.public_id, chosen[0])
            return
        kind, context = chosen
        contact = (
            await session.exec(
                select(RequesterContact)
                .where(RequesterContact.kind == ContactKind.EMAIL)
                .where(RequesterContact.value == ticket.contact_value)
            )
        ).first()
        if contact is not None and contact.undeliverable:
            log.info("%s: not mailing %s, the address bounced", ticket.public_id, kind)
            return
        requester = await session.get_one(Requester, ticket.requester_id)
        await self.outbox.enqueue(
            session,
            ticket=ticket,
            kind=kind,
            to=ticket.contact_value,
            to_name=requester.name,
            lang=requester.language,
            context={k: _text(v) for k, v in context.items()},
        )


def _text(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
