"""The plumbing every chat update goes through: claim the stored update (a replay is handled
once), lock the chat's conversation row (a restart resumes mid-verification), the per-chat rate
limit, and saying things (every sentence from the template tree: blocks of chat.<lang>.j2,
names of types and statuses in names.<lang>.j2; rightsdesk.templating.Templates.say / .name /
.type_names)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from rightsdesk.chat.updates import ChatUpdate, language_of
from rightsdesk.clock import Clock
from rightsdesk.config import Settings
from rightsdesk.db import Database
from rightsdesk.followups import FollowUps
from rightsdesk.models import (
    ACTIVE_STATUSES,
    Channel,
    ChatConversation,
    ContactKind,
    Message,
    Ticket,
    TicketStatus,
)
from rightsdesk.notices import DpoAlerts
from rightsdesk.outbound import Outbox
from rightsdesk.pipeline import ClassifiesOffLoop
from rightsdesk.tickets import TicketService
from rightsdesk.verification import Verifier

log = logging.getLogger("rightsdesk.chat")


@dataclass
class Turn:
    """One update being handled: its stored row and the conversation it moves on."""

    session: AsyncSession
    update: ChatUpdate
    row: Message
    conversation: ChatConversation
    sent: list[int] = field(default_factory=list)  # message rows this turn queued

    @property
    def lang(self) -> str:
        return self.conversation.language


class Conversations:
    """What `ChatDesk` is built on: its dependencies and the plumbing of a turn."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        tickets: TicketService,
        verifier: Verifier,
        outbox: Outbox,
        classifier: ClassifiesOffLoop,
        alerts: DpoAlerts,
        followups: FollowUps | None = None,
    ) -> None:
        self.settings = settings
        self.chat = settings.telegram
        self.db = db
        self.clock = clock
        self.tickets = tickets
        self.verifier = verifier
        self.outbox = outbox
        self.classifier = classifier
        self.alerts = alerts
        self.followups = followups

    # ---- plumbing --------------------------------------------------------------------------

    async def _turn(self, session: AsyncSession, update: ChatUpdate, text: str) -> Turn | None:
        """Claim the stored update and the chat's conversation. None: handled already (a
        replay), or the chat is over its rate limit (stored, not answered)."""
        row = (
            await session.exec(
                select(Message)
                .where(Message.dedupe_key == update.key)
                .where(Message.parse_status == "stored")
                .with_for_update(skip_locked=True)
            )
        ).first()
        if row is None:
            return None
        now = self.clock.now()
        row.sender = update.chat_id
        row.text = row.new_text = text[:20000]
        row.parse_status = "parsed"
        row.processed_at = now
        row.details = {"sender_name": update.user_name}
        session.add(row)
        conversation = await self._conversation(session, update)
        turn = Turn(session, update, row, conversation)
        recent = (
            await session.exec(
                select(func.count(col(Message.id)))
                .where(Message.sender == update.chat_id)
                .where(Message.channel == Channel.TELEGRAM)
                .where(Message.direction == "in")
                .where(col(Message.received_at) >= now - dt.timedelta(minutes=1))
                .where(col(Message.id) != row.id)
            )
        ).one()
        limit = self.chat.messages_per_minute
        if recent >= limit:
            row.parse_status = "ignored"
            row.details = {**row.details, "rate_limited": True}
            if recent == limit:  # one warning per burst, not one per message
                await self._say(turn, "slow_down")
            log.info("chat message %s over the rate limit: stored, not handled", row.id)
            return None
        return turn

    async def _conversation(self, session: AsyncSession, update: ChatUpdate) -> ChatConversation:
        query = (
            select(ChatConversation)
            .where(ChatConversation.channel == Channel.TELEGRAM)
            .where(ChatConversation.chat_id == update.chat_id)
            .with_for_update()
        )
        found = (await session.exec(query)).first()
        if found is not None:
            return found
        try:
            async with session.begin_nested():  # two first updates of one chat may race
                created = ChatConversation(
                    chat_id=update.chat_id,
                    language=language_of(update.language_code),
                    created_at=self.clock.now(),
                    updated_at=self.clock.now(),
                )
                session.add(created)
                await session.flush()
        except IntegrityError:
            return (await session.exec(query)).one()
        return created

    async def _current_ticket(self, turn: Turn) -> Ticket | None:
        """The ticket the conversation is working on, while it still waits for this chat."""
        conversation = turn.conversation
        if conversation.ticket_id is None:
            return None
        ticket = await turn.session.get(Ticket, conversation.ticket_id)
        if ticket is None or ticket.status != TicketStatus.AWAITING_VERIFICATION:
            if conversation.state in ("identity", "code", "documents"):
                self._move(turn, "idle")  # verified by mail, or by the DPO, meanwhile
            return None
        return ticket

    async def _waiting_for_account(self, turn: Turn) -> Ticket | None:
        """A ticket of this chat that needs to know which account it is about, asked for
        outside the conversation (the DPO relabelled it): the next text answers that."""
        ticket = await latest_active(turn.session, turn.update.chat_id)
        if ticket is None or ticket.verification != "identity":
            return None
        turn.conversation.ticket_id = ticket.id
        self._move(turn, "identity")
        return ticket

    def _move(self, turn: Turn, state: str, pending: dict[str, Any] | None = None) -> None:
        conversation = turn.conversation
        conversation.state = state
        conversation.pending = pending or {}
        conversation.updated_at = self.clock.now()
        turn.session.add(conversation)

    def _document_mb(self) -> str:
        return f"{self.chat.max_document_bytes / (1024 * 1024):g}"

    async def _say(
        self,
        turn: Turn,
        what: str,
        *,
        ticket: Ticket | None = None,
        buttons: list[list[tuple[str, str]]] | None = None,
        **values: Any,
    ) -> None:
        if ticket is not None:
            values.setdefault("ticket_id", ticket.public_id)
        text = self._words(turn, what, **values)
        await self._send(turn, text, kind=f"chat_{what}", ticket=ticket, buttons=buttons)

    def _words(self, turn: Turn, what: str, **values: Any) -> str:
        return self.outbox.templates.say(what, turn.lang, **values)

    def _type_name(self, turn: Turn, type_: str) -> str:
        return self.outbox.templates.name("type", type_, turn.lang)

    async def _greet(self, turn: Turn) -> None:
        """Chinese (in the chat's script), then English: the user may not have chosen yet."""
        url = self.chat.privacy_policy_url
        chinese = turn.lang if turn.lang != "en" else "zh"
        parts = [
            self.outbox.templates.say("greeting", lang, policy_url=url) for lang in (chinese, "en")
        ]
        await self._send(turn, "\n\n".join(parts), kind="chat_greeting")

    async def _send(
        self,
        turn: Turn,
        text: str,
        *,
        kind: str,
        ticket: Ticket | None = None,
        buttons: list[list[tuple[str, str]]] | None = None,
    ) -> None:
        entry = await self.outbox.enqueue_chat(
            turn.session,
            chat_id=turn.update.chat_id,
            text=text,
            kind=kind,
            ticket_id=ticket.id if ticket is not None else turn.row.ticket_id,
            buttons=buttons,
        )
        turn.sent.append(entry.message_id)


def tickets_of(chat_id: str) -> SelectOfScalar[Ticket]:
    """This chat's own tickets: every ticket query of a chat starts here."""
    return (
        select(Ticket)
        .where(Ticket.contact_kind == ContactKind.TELEGRAM)
        .where(Ticket.contact_value == chat_id)
    )


async def latest_active(
    session: AsyncSession, chat_id: str, *, verification: str | None = None
) -> Ticket | None:
    """The chat's newest ticket still owed an answer (and waiting for `verification`)."""
    query = tickets_of(chat_id).where(col(Ticket.status).in_([s.value for s in ACTIVE_STATUSES]))
    if verification is not None:
        query = query.where(Ticket.verification == verification)
    return (await session.exec(query.order_by(col(Ticket.id).desc()).limit(1))).first()
