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
    """Implements tickets.Notices: by mail, or in the chat the request came from."""

    def __init__(self, settings: Settings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox

    def _kind(
        self, ticket: Ticket, action: str, details: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        previous = details.get("previous")
        if action == "resolved":
            # What the requester reads (`--reply`); the DPO's own `--note` is never sent.
            return "resolved", {"reply": details.get("resolution_note", "")}
        if action == "denied":
            return "denied", {"reason": details.get("denial_reason", "")}
        if action == "cancelled":
            return "cancelled", {}
        if action == "extended":
            return "extended", {
                "reason": details["extension_reason"],
                "response_due": details["response_due"],
                # Set only when the completion date (deletion within 30 days) moved too.
                "completion_due": details.get("completion_due") or "",
                "completion_reason": details.get("completion_extension_reason") or "",
            }
        if action == "verified" and previous != TicketStatus.NEW:
            # Verified at intake is said in the acknowledgement; later, it gets its own mail.
            # A deletion names its own date too (30 days), as the acknowledgement did.
            return "verified", {
                "response_due": details.get("response_due"),
                "completion_due": ticket.completion_due or "",
            }
        if action == "closed" and previous == TicketStatus.AWAITING_VERIFICATION:
            return "auto_closed", {"days": self.settings.verification.close_after_days}
        return None

    async def ticket_changed(
        self, session: AsyncSession, ticket: Ticket, action: str, details: dict[str, Any]
    ) -> None:
        chosen = self._kind(ticket, action, details)
        if chosen is None or ticket.contact_kind not in (ContactKind.EMAIL, ContactKind.TELEGRAM):
            return
        kind, context = chosen
        if ticket.contact_kind == ContactKind.EMAIL and not await mailable(session, ticket):
            log.info("%s: no %s mail to the requester's address", ticket.public_id, kind)
            return
        requester = await session.get_one(Requester, ticket.requester_id)
        await self.outbox.tell_requester(
            session,
            ticket=ticket,
            kind=kind,
            to_name=requester.name,
            lang=ticket.language or requester.language,
            context={k: _text(v) for k, v in context.items()},
        )


async def mailable(session: AsyncSession, ticket: Ticket) -> bool:
    """The ticket's address can be written to: a header can carry it, and it has not bounced."""
    if not can_mail(ticket.contact_value):
        return False
    contact = (
        await session.exec(
            select(RequesterContact)
            .where(RequesterContact.kind == ContactKind.EMAIL)
            .where(RequesterContact.value == ticket.contact_value)
        )
    ).first()
    return contact is None or not contact.undeliverable


_ALERT_SUBJECTS = {
    "documents_received": "documents received in the chat",
    "urgent_minor": "urgent: a request about a child's data",
}


class DpoAlerts:
    """What the DPO must hear about at once, not in tomorrow's digest: a request about a
    child's data, documents sent in the chat. By mail, and in the DPO's chat if configured."""

    def __init__(self, settings: Settings, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox

    async def tell(self, session: AsyncSession, ticket: Ticket, what: str) -> None:
        subject = f"[{ticket.public_id}] {_ALERT_SUBJECTS[what]}"
        text = (
            f"{subject}.\nTypes: {', '.join(t.value for t in ticket.types)}\n"
            f"Due: {ticket.response_due}\nSee: rightsdesk tickets show {ticket.public_id}\n"
        )
        await self.outbox.enqueue_internal_to_all(
            session,
            self.settings.desk.dpo_emails,
            kind=what,
            subject=subject,
            text=text,
            ticket_id=ticket.id,
        )
        if self.settings.telegram.dpo_chat_id:
            await self.outbox.enqueue_chat(
                session,
                chat_id=self.settings.telegram.dpo_chat_id,
                text=text,
                kind=what,
                ticket_id=ticket.id,
            )


def _text(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
