"""`ChatDesk`: one method per kind of update (a command, free text, a button, a document), each
one transaction, and the steps of a request (understand, confirm, open, verify, cancel)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlmodel
from sqlmodel import col, select

from rightsdesk.chat.conversation import Conversations, Turn, latest_active, tickets_of
from rightsdesk.chat.updates import ACTOR, ChatDocument, ChatUpdate
from rightsdesk.followups import worth_reading
from rightsdesk.identifiers import find_code, find_identifiers
from rightsdesk.languages import LANGS, normalise, written_in
from rightsdesk.models import (
    ACTIVE_STATUSES,
    Channel,
    ContactKind,
    Message,
    OutboxEntry,
    Requester,
    RequesterContact,
    RequestType,
    StoredAttachment,
    Ticket,
    TicketStatus,
)
from rightsdesk.tickets import Contact, NewTicket, TicketError
from rightsdesk.withdrawal_words import says_cancel

log = logging.getLogger("rightsdesk.chat")


class ChatDesk(Conversations):
    # ---- commands --------------------------------------------------------------------------

    async def start(self, update: ChatUpdate) -> None:
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, "/start")) is None:
                return
            await self._greet(turn)

    async def set_language(self, update: ChatUpdate, argument: str) -> None:
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, f"/lang {argument}")) is None:
                return
            said = argument.strip()
            wanted = "zh-Hant" if said in ("繁體", "繁体", "hant") else normalise(said)
            if wanted not in LANGS:
                await self._say(turn, "language_usage")
                return
            turn.conversation.language = wanted
            # What the requester chose: their later requests, and the chat's open tickets.
            await session.exec(
                sqlmodel.update(Requester)
                .where(
                    col(Requester.id).in_(
                        select(RequesterContact.requester_id)
                        .where(RequesterContact.kind == ContactKind.TELEGRAM)
                        .where(RequesterContact.value == update.chat_id)
                    )
                )
                .values(language=wanted)
            )
            await session.exec(
                sqlmodel.update(Ticket)
                .where(col(Ticket.contact_kind) == ContactKind.TELEGRAM)
                .where(col(Ticket.contact_value) == update.chat_id)
                .where(col(Ticket.status).in_([s.value for s in ACTIVE_STATUSES]))
                .values(language=wanted)
            )
            await self._say(turn, "language_set")

    async def status(self, update: ChatUpdate) -> None:
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, "/status")) is None:
                return
            found = await session.exec(
                tickets_of(update.chat_id).order_by(col(Ticket.id).desc()).limit(10)
            )
            tickets = list(found.all())
            if not tickets:
                await self._say(turn, "status_none")
                return
            lines = [
                self._words(
                    turn,
                    "status_line",
                    ticket_id=ticket.public_id,
                    status=self.outbox.templates.name("status", ticket.status, turn.lang),
                    due=ticket.response_due.isoformat() if ticket.response_due else "-",
                )
                for ticket in tickets
            ]
            await self._send(turn, "\n".join(lines), kind="chat_status")

    async def cancel(self, update: ChatUpdate, argument: str) -> None:
        """Withdraw one of this chat's own requests. Someone else's, or one that does not
        exist, get the same answer: the chat learns nothing about other people's tickets."""
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, f"/cancel {argument}")) is None:
                return
            named = [f.text for f in find_identifiers(argument) if f.label == "TICKET"]
            if not named:
                if turn.conversation.state == "confirming":
                    await self._forget(turn)
                    return
                latest = await latest_active(turn.session, turn.update.chat_id)
                example = latest.public_id if latest else "PRIV-2026-000001"
                await self._say(turn, "cancel_usage", example=example)
                return
            await self._cancel_ticket(turn, named[0])

    async def unlink(self, update: ChatUpdate) -> None:
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, "/unlink")) is None:
                return
            if turn.conversation.account_id is None:
                await self._say(turn, "not_linked")
                return
            turn.conversation.account_id = None
            await self._say(turn, "unlinked")

    async def new_request(self, update: ChatUpdate) -> None:
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, "/new")) is None:
                return
            self._move(turn, "idle", pending={"new": True})
            await self._say(turn, "new_prompt")

    async def polite_refusal(self, update: ChatUpdate, what: str) -> None:
        """Anything the bot does not read (stickers, voice, an edit, a group chat, an unknown
        command): stored like the rest, answered politely."""
        reply = {"edited": "edited", "group": "private_only", "command": "greeting"}.get(
            what, "unsupported"
        )
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, f"[{what}]")) is None:
                return
            if reply == "greeting":
                await self._greet(turn)
            else:
                await self._say(turn, reply)

    # ---- free text -------------------------------------------------------------------------

    async def text(self, update: ChatUpdate, text: str) -> None:
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, text)) is None:
                return
            conversation = turn.conversation
            said = text.strip()
            if says_cancel(said) and conversation.state != "idle":
                await self._cancel_in_progress(turn)
                return
            ticket = await self._current_ticket(turn)
            if conversation.state == "idle":
                ticket = await self._waiting_for_account(turn) or ticket
            if conversation.state in ("identity", "code") and ticket is not None:
                await self.tickets.attach_message(session, ticket.public_id, turn.row, ACTOR)
                if conversation.state == "identity":
                    await self._send_code(turn, ticket, said)
                else:
                    await self._check_code(turn, ticket, said)
                self.tickets.answered_by_desk(session, ticket)  # the bot's own questions
                return
            if conversation.state == "documents" and ticket is not None:
                await self.tickets.attach_message(session, ticket.public_id, turn.row, ACTOR)
                await self._say(turn, "ask_documents", ticket=ticket, mb=self._document_mb())
                return
            if conversation.state != "confirming" and not conversation.pending.get("new"):
                active = await latest_active(turn.session, turn.update.chat_id)
                if active is not None:
                    await self.tickets.attach_message(session, active.public_id, turn.row, ACTOR)
                    if self.followups is not None:  # a new ask is suggested, the DPO told
                        await self._read_follow_up(turn, active, said)
                    self._move(turn, "idle")
                    await self._say(turn, "added", ticket=active)
                    return
            await self._understand(turn, said)

    async def choose(
        self, update: ChatUpdate, data: str, question_id: int | None, question: str
    ) -> str | None:
        """A button under a question was tapped. Returns a short answer for the tap itself
        (a toast), or None."""
        async with self.db.transaction() as session:
            if (turn := await self._turn(session, update, f"[button {data[:40]}]")) is None:
                return None
            pending = turn.conversation.pending
            parts = data.split(":")
            if (
                len(parts) != 3
                or parts[0] != "c"
                or turn.conversation.state != "confirming"
                or str(pending.get("message")) != parts[1]
            ):
                return self._words(turn, "expired_question")
            choice = parts[2]
            found_types = [RequestType(t) for t in pending.get("types", [])]
            if choice == "all":
                types, label = found_types, self._words(turn, "confirm_all")
            elif choice in {t.value for t in found_types}:
                types, label = [RequestType(choice)], self._type_name(turn, choice)
            else:
                types, label = [], self._words(turn, "something_else")
            if question_id is not None:
                # The question keeps its text, loses its buttons, and shows the choice.
                edit = await self.outbox.enqueue_chat(
                    session,
                    chat_id=update.chat_id,
                    text=f"{question}\n{self._words(turn, 'chosen', choice=label)}",
                    kind="chat_choice",
                    method="editMessageText",
                    params={"message_id": question_id},
                )
                turn.sent.append(edit.message_id)
            await self._open(turn, types)
            return None

    # ---- documents -------------------------------------------------------------------------

    async def document(
        self,
        update: ChatUpdate,
        document: ChatDocument,
        download: Callable[[], Awaitable[bytes]],
    ) -> None:
        """A file or photo: kept on the ticket of a guardian's or relative's request, within
        the configured types and size. Downloaded outside the transaction."""
        limit = self.chat.max_document_bytes
        problem: str | None = None
        content = b""
        ticket_id: int | None = None
        if document.content_type not in self.chat.document_types:
            problem = "document_type"
        elif document.size is not None and document.size > limit:
            problem = "document_too_large"
        else:
            ticket_id = await self._documents_ticket(update.chat_id)
            if ticket_id is None:
                problem = "document_unexpected"
            else:
                try:
                    content = await download()
                except Exception as exc:  # the network, Telegram: the user may send it again
                    log.warning("a chat document could not be fetched: %s", type(exc).__name__)
                    problem = "document_failed"
                else:
                    problem = "document_too_large" if len(content) > limit else None
        async with self.db.transaction() as session:
            what = f"[document {document.content_type}]"
            if (turn := await self._turn(session, update, what)) is None:
                return
            if problem is not None or ticket_id is None:
                await self._say(turn, problem or "document_unexpected", mb=self._document_mb())
                return
            ticket = await session.get_one(Ticket, ticket_id)
            session.add(
                StoredAttachment.of(
                    turn.row.id or 0, document.filename, document.content_type, content
                )
            )
            await self.tickets.attach_message(
                session, ticket.public_id, turn.row, ACTOR, "documents_received"
            )
            await self.alerts.tell(session, ticket, "documents_received")
            await self._say(turn, "document_received", ticket=ticket)

    async def _documents_ticket(self, chat_id: str) -> int | None:
        """The chat's active ticket that waits for documents, if any."""
        async with self.db.reading() as session:
            ticket = await latest_active(session, chat_id, verification="manual")
            return ticket.id if ticket is not None else None

    # ---- the steps -------------------------------------------------------------------------

    async def _read_follow_up(self, turn: Turn, ticket: Ticket, said: str) -> None:
        assert self.followups is not None
        # In the turn's transaction, as the chat's other classification (_understand) is: the
        # input is bounded (rightsdesk.classifying) and runs off the loop.
        worth = worth_reading(said)
        found = await self.classifier.classify("", worth) if worth else None
        await self.followups.read(turn.session, ticket, turn.row, found)

    async def _understand(self, turn: Turn, text: str) -> None:
        found = await self.classifier.classify("", text)
        written = written_in(found.language, text)
        if written in ("zh", "zh-Hant") and turn.lang in ("zh", "zh-Hant"):
            # Chinese either way: answer in the script the request is written in (申請註銷帳號
            # from a client set to simplified Chinese is answered in traditional characters).
            turn.conversation.language = written
        pending: dict[str, Any] = {
            "message": turn.row.id,
            "types": [t.value for t in found.types],
            "classification": {
                "scores": found.scores,
                "language": found.language,
                "needs_review": found.needs_review,
                "entities": found.entities,
                "model_version": found.model_version,
            },
        }
        if found.needs_review:
            self._move(turn, "confirming", pending=pending)
            await self._open(turn, list(found.types), triage=True)
            return
        row_id = turn.row.id
        if found.types == [RequestType.NOT_RIGHTS_REQUEST]:
            await self._say(
                turn,
                "not_rights",
                support=self.chat.support_hint,
                buttons=[[(self._words(turn, "about_my_data"), f"c:{row_id}:other")]],
            )
        else:
            buttons = [[(self._words(turn, "confirm_all"), f"c:{row_id}:all")]]
            if len(found.types) > 1:
                buttons += [
                    [(self._type_name(turn, t.value), f"c:{row_id}:{t.value}")] for t in found.types
                ]
            buttons.append([(self._words(turn, "something_else"), f"c:{row_id}:other")])
            names = self.outbox.templates.type_names(list(found.types), turn.lang)
            await self._say(turn, "confirm", types=names, buttons=buttons)
        # The question goes on the ticket the answer opens.
        self._move(turn, "confirming", pending={**pending, "question": turn.sent[-1]})

    async def _open(self, turn: Turn, types: Sequence[RequestType], triage: bool = False) -> None:
        """Open the ticket for the pending message; `types` empty means "something else"."""
        session = turn.session
        conversation = turn.conversation
        pending = conversation.pending
        first = turn.row
        if pending.get("message") and pending["message"] != turn.row.id:
            first = await session.get(Message, pending["message"]) or turn.row
        needs_review = triage or not types
        if not types or types == [RequestType.NOT_RIGHTS_REQUEST]:
            types, needs_review = [RequestType.INQUIRY], True
        ticket = await self.tickets.open_in(
            session,
            NewTicket(
                channel=Channel.TELEGRAM,
                contact=Contact.telegram(turn.update.chat_id),
                types=list(types),
                received_at=first.received_at,
                requester_name=turn.update.user_name,
                language=turn.lang,
                needs_review=needs_review,
                classification=pending.get("classification"),
            ),
            ACTOR,
        )
        for row in {first.id: first, turn.row.id: turn.row}.values():
            row.ticket_id = ticket.id
            session.add(row)
        # What the bot asked about it (the question and its buttons) belongs to it too.
        answered = [pending["question"], *turn.sent] if pending.get("question") else turn.sent
        if answered:
            await session.exec(
                sqlmodel.update(Message)
                .where(col(Message.id).in_(answered))
                .values(ticket_id=ticket.id)
            )
            await session.exec(
                sqlmodel.update(OutboxEntry)
                .where(col(OutboxEntry.message_id).in_(answered))
                .values(ticket_id=ticket.id)
            )
        conversation.ticket_id = ticket.id
        step = await self.verifier.begin_in_chat(
            session, ticket, linked_account_id=conversation.account_id
        )
        if RequestType.MINOR in ticket.types:
            await self.alerts.tell(session, ticket, "urgent_minor")
        details: dict[str, Any] = {
            "ticket_id": ticket.public_id,
            "due": ticket.response_due.isoformat() if ticket.response_due else "-",
            "days": self.settings.deadlines.response_working_days,
        }
        if needs_review:
            self._move(turn, "idle")
            await self._say(turn, "triage", ticket=ticket, **details)
            return
        lines = [self._words(turn, "opened", **details)]
        if ticket.completion_due:
            lines.append(self._words(turn, "completion", date=ticket.completion_due))
        if step == "manual":
            self._move(turn, "documents")
            lines.append(self._words(turn, "ask_documents", mb=self._document_mb()))
        elif step == "identity":
            self._move(turn, "identity")
            lines.append(self._words(turn, "ask_identity"))
        else:
            self._move(turn, "idle")
            if step == "verified":
                lines.append(self._words(turn, "linked"))
        await self._send(turn, "\n".join(lines), kind="chat_opened", ticket=ticket)

    async def _send_code(self, turn: Turn, ticket: Ticket, said: str) -> None:
        try:
            await self.verifier.send_code_to_account(turn.session, ticket, said, turn.lang)
        except TicketError:
            ticket.needs_review = True
            turn.session.add(ticket)
            self._move(turn, "idle")
            await self._say(turn, "too_many_codes", ticket=ticket)
            return
        self._move(turn, "code")
        await self._say(turn, "code_sent", ticket=ticket)

    async def _check_code(self, turn: Turn, ticket: Ticket, said: str) -> None:
        if find_code(said) is None:
            if any(found.label == "EMAIL" for found in find_identifiers(said)):
                await self._send_code(turn, ticket, said)  # another address: a new code there
            else:
                await self._say(turn, "code_format", ticket=ticket)
            return
        if ticket.verification == "no_account":
            # Nobody matched the account named: a code cannot be right, and the answers (and
            # the lock) are the same as for a real one, so the chat learns nothing.
            turn.conversation.wrong_codes += 1
            left = self.settings.verification.max_attempts - turn.conversation.wrong_codes
            await self.tickets.note_in(
                turn.session, ticket, ACTOR, "verification_code_wrong", {"locked": left <= 0}
            )
            outcome = "locked" if left <= 0 else "wrong_code"
        else:
            checked = await self.verifier.check_reply(turn.session, ticket, said)
            if checked is None:
                outcome, left = "locked", 0
            else:
                outcome, left = checked.outcome, checked.attempts_left
        if outcome == "verified":
            # The verified notice (RequesterNotices) tells the chat; remember the link.
            requester = await turn.session.get_one(Requester, ticket.requester_id)
            turn.conversation.account_id = requester.account_id
            turn.conversation.wrong_codes = 0
            self._move(turn, "idle")
        elif outcome == "expired":
            self._move(turn, "identity")
            await self._say(turn, "code_expired", ticket=ticket)
        elif outcome == "locked":
            self._move(turn, "idle")
            await self._say(turn, "locked", ticket=ticket)
        else:
            await self._say(turn, "wrong_code", ticket=ticket, left=left)

    async def _cancel_in_progress(self, turn: Turn) -> None:
        """ "cancel" typed in the middle of something: drop the question, or withdraw the
        request being verified."""
        ticket = await self._current_ticket(turn)
        if turn.conversation.state == "confirming" or ticket is None:
            await self._forget(turn)
            return
        await self._cancel_ticket(turn, ticket.public_id)

    async def _cancel_ticket(self, turn: Turn, public_id: str) -> None:
        ticket = await self.tickets.find_in(turn.session, public_id)
        if (
            ticket is None
            or ticket.contact_kind != ContactKind.TELEGRAM
            or ticket.contact_value != turn.update.chat_id
        ):
            await self._say(turn, "not_yours", ticket_id=public_id)
            return
        await self.tickets.attach_message(turn.session, ticket.public_id, turn.row, ACTOR)
        if TicketStatus(ticket.status) not in ACTIVE_STATUSES:
            await self._say(turn, "already_finished", ticket=ticket)
            return
        # The "cancelled" notice (RequesterNotices) answers in the chat.
        await self.tickets.transition_in(
            turn.session,
            ticket.public_id,
            TicketStatus.CANCELLED,
            "requester",
            cancel_reason="withdrawn by the requester in the chat",
        )
        if turn.conversation.ticket_id == ticket.id:
            self._move(turn, "idle")

    async def _forget(self, turn: Turn) -> None:
        self._move(turn, "idle")
        await self._say(turn, "forgotten")
