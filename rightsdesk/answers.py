"""Answering requesters: a person's replies, the team's internal notes, and the two decisions
that end a request (resolve, deny) with what the requester reads kept apart from what the team
writes for itself.

One method per action, each one transaction that also writes its audit event, so the CLI, the
coming web console and the requester portal all act through the same calls:

    Answers.reply    free text or a canned reply, with files, on the ticket's own channel:
                     a threaded mail (Outbox.enqueue) or chat messages (sendMessage, and
                     sendDocument per file); the files are kept on the ticket
    Answers.note     an internal note: a message row on the internal channel, never queued
    Answers.resolve  resolved, with the reply the requester reads and an optional note
    Answers.deny     denied, with the reason the requester reads and an optional note
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateNotFound, UndefinedError
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.desk_parts import DeskParts, OnDeskParts
from rightsdesk.filenames import safe_name
from rightsdesk.languages import LANGS, normalise
from rightsdesk.models import (
    Channel,
    ContactKind,
    Message,
    Requester,
    StoredAttachment,
    Ticket,
    TicketStatus,
)
from rightsdesk.notices import mailable
from rightsdesk.templating import OutgoingAttachment
from rightsdesk.tickets import TRANSITIONS, TicketError

REPLY_KIND = "reply"
# Awaited by `resolve` before the ticket changes: (session, ticket, without_package) -> the
# reason to record when a rule was waived, or None; raises TicketError to refuse.
ResolveGuard = Callable[[AsyncSession, Ticket, str | None], Awaitable[dict[str, Any] | None]]
CHAT_LIMIT = 4096  # characters in one Telegram message


@dataclass(frozen=True)
class Attachment:
    """A file a person attaches to a reply: its name and bytes; the type is guessed from the
    name when not given."""

    filename: str
    content: bytes
    content_type: str | None = None

    def outgoing(self) -> OutgoingAttachment:
        guessed, _ = mimetypes.guess_type(self.filename, strict=False)
        content_type = (self.content_type or guessed or "application/octet-stream").lower()
        return OutgoingAttachment(
            safe_name(self.filename, "attachment"), content_type, self.content
        )


@dataclass(frozen=True)
class SentReply:
    """What a reply became: the rows it queued and the files it carried."""

    ticket_id: str
    channel: str
    lang: str
    template: str | None
    text: str
    message_ids: list[int]
    attachments: list[dict[str, Any]] = field(default_factory=list)


class Answers(OnDeskParts):
    def __init__(
        self,
        parts: DeskParts,
    ) -> None:
        super().__init__(parts)
        self.resolve_guards: list[ResolveGuard] = []

    # ---- replies ---------------------------------------------------------------------------

    async def reply(
        self,
        public_id: str,
        *,
        actor: str,
        text: str | None = None,
        template: str | None = None,
        attachments: Sequence[Attachment] = (),
        lang: str | None = None,
    ) -> SentReply:
        """Send the requester a person's message on the ticket's own channel.

        `text` alone is the message; with `template` (a canned reply), it is the template's
        `text` variable (deletion_done lists what was deleted in it). `lang` overrides the
        ticket's language for this one reply."""
        if text is not None and not text.strip():
            text = None
        if text is None and template is None:
            raise TicketError("a reply needs a text or a template", "reply_empty")
        if lang is not None and normalise(lang) is None:
            raise TicketError(f"--lang {lang!r}: we answer in {', '.join(LANGS)}")
        files = [a.outgoing() for a in attachments]
        total = sum(len(f.content) for f in files)
        cap = self.settings.outbound.max_attachment_bytes
        if total > cap:
            raise TicketError(
                f"the attachments are {total:,} bytes; a reply may carry {cap:,} "
                "(outbound.max_attachment_bytes)",
                "attachments_too_large",
                total=f"{total:,}",
                cap=f"{cap:,}",
            )
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            requester = await session.get_one(Requester, ticket.requester_id)
            language = normalise(lang) or ticket.language or requester.language or "zh"
            body = self._body(ticket, requester, language, text, template)
            context = {"text": body}
            if ticket.contact_kind == ContactKind.EMAIL:
                rows = await self._mail(session, ticket, requester, language, context, files)
            elif ticket.contact_kind == ContactKind.TELEGRAM:
                rows = await self._chat(session, ticket, language, context, files)
            else:
                raise TicketError(
                    f"{ticket.public_id} came by {ticket.contact_kind}: there is no channel "
                    "to send a reply on; record what you told them with `tickets note`"
                )
            kept = [
                {
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "size": len(f.content),
                    "sha256": hashlib.sha256(f.content).hexdigest(),
                }
                for f in files
            ]
            await self.tickets.note_in(
                session,
                ticket,
                actor,
                "replied",
                {
                    "messages": rows,
                    "channel": ticket.contact_kind,
                    "lang": language,
                    "template": template,
                    "text_sha256": hashlib.sha256(body.encode()).hexdigest(),
                    "attachments": kept,
                },
            )
            return SentReply(
                ticket.public_id, ticket.contact_kind, language, template, body, rows, kept
            )

    def _body(
        self,
        ticket: Ticket,
        requester: Requester,
        lang: str,
        text: str | None,
        template: str | None,
    ) -> str:
        if template is None:
            assert text is not None
            return text.strip()
        context: dict[str, Any] = {
            "ticket_id": ticket.public_id,
            "types": [t.value for t in ticket.types],
            "received_on": self.tickets.policy.local_day(ticket.received_at).isoformat(),
            "response_due": ticket.response_due.isoformat() if ticket.response_due else "",
            "completion_due": ticket.completion_due.isoformat() if ticket.completion_due else "",
            "requester_name": requester.name or "",
            "subject": ticket.subject or "",
            "channel": ticket.channel,
        }
        if text is not None:
            context["text"] = text.strip()
        try:
            return self.outbox.templates.canned(template, lang, context)
        except TemplateNotFound:
            known = ", ".join(self.outbox.templates.replies()) or "none"
            raise TicketError(
                f"no canned reply {template!r} in {lang}; there are: {known}"
            ) from None
        except UndefinedError as exc:
            raise TicketError(
                f"the canned reply {template!r} needs your text (--text, or the console's "
                f"reply box): {exc.message}"
            ) from None

    async def _mail(
        self,
        session: AsyncSession,
        ticket: Ticket,
        requester: Requester,
        lang: str,
        context: dict[str, Any],
        files: list[OutgoingAttachment],
    ) -> list[int]:
        if not await mailable(session, ticket):
            raise TicketError(
                f"{ticket.public_id}: the requester's address cannot be mailed (it bounced, or "
                "no header can carry it)"
            )
        entry = await self.outbox.enqueue(
            session,
            ticket=ticket,
            kind=REPLY_KIND,
            to=ticket.contact_value,
            to_name=requester.name,
            lang=lang,
            context=context,
            attachments=files,
            automatic=False,  # a person wrote it: auto-responders may answer, as to any mail
            lang_chosen=True,  # `language` above already prefers the ticket's, unless --lang
        )
        for file in files:
            session.add(_stored(entry.message_id, file))
        return [entry.message_id]

    async def _chat(
        self,
        session: AsyncSession,
        ticket: Ticket,
        lang: str,
        context: dict[str, Any],
        files: list[OutgoingAttachment],
    ) -> list[int]:
        rendered = self.outbox.templates.render(
            REPLY_KIND,
            lang,
            {"ticket_id": ticket.public_id, "channel": ticket.channel, **context},
            signed=False,
        )
        rows = []
        for part in _chat_parts(rendered.text.strip()):  # a chat message holds 4,096 characters
            said = await self.outbox.enqueue_chat(
                session,
                chat_id=ticket.contact_value,
                text=part,
                kind=REPLY_KIND,
                ticket_id=ticket.id,
            )
            rows.append(said.message_id)
        for file in files:  # after the text, in order: the sender sends by entry id
            sent = await self.outbox.enqueue_chat_document(
                session,
                chat_id=ticket.contact_value,
                attachment=file,
                kind=REPLY_KIND,
                ticket_id=ticket.id,
            )
            session.add(_stored(sent.message_id, file))
            rows.append(sent.message_id)
        return rows

    # ---- internal notes --------------------------------------------------------------------

    async def note(self, public_id: str, *, actor: str, text: str) -> int:
        """Write an internal note on the ticket: for the team, never sent to anyone."""
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            return await self.note_in(session, ticket, actor=actor, text=text)

    async def note_in(self, session: AsyncSession, ticket: Ticket, *, actor: str, text: str) -> int:
        """The same inside the caller's transaction; returns the note's message id."""
        written = _required(text, "a note's text")
        now = self.clock.now()
        row = Message(
            ticket_id=ticket.id,
            direction="out",
            channel=Channel.INTERNAL,  # no outbox entry is ever written for this channel
            sender=actor,
            text=written,
            parse_status="parsed",
            details={"kind": "note", "internal": True},
            received_at=now,
            processed_at=now,
        )
        session.add(row)
        await session.flush()
        assert row.id is not None
        await self.tickets.note_in(
            session,
            ticket,
            actor,
            "noted",
            {"message": row.id, "text_sha256": hashlib.sha256(written.encode()).hexdigest()},
        )
        return row.id

    # ---- decisions -------------------------------------------------------------------------

    async def resolve(
        self,
        public_id: str,
        *,
        actor: str,
        reply: str,
        note: str | None = None,
        without_package: str | None = None,
    ) -> Ticket:
        """Resolved: `reply` is shown to the requester inside the resolved notice; `note`
        stays with the team. An access or portability ticket needs a delivered package, or
        `without_package`: the reason nothing is given (rightsdesk.packages)."""
        reply = _required(reply, "a resolution reply (--reply, what the requester reads)")
        async with self.db.transaction() as session:
            ticket = await self.tickets.load_in(session, public_id, lock=True)
            legal = TicketStatus.RESOLVED in TRANSITIONS[TicketStatus(ticket.status)]
            if legal:  # else transition_in says why; the core's own checks speak first
                for check in self.tickets.resolve_checks:
                    await check(session, ticket)
            for guard in self.resolve_guards if legal else []:
                waived = await guard(session, ticket, without_package)
                if waived is not None:
                    await self.tickets.note_in(session, ticket, actor, "resolve_waived", waived)
            ticket = await self.tickets.transition_in(
                session, public_id, TicketStatus.RESOLVED, actor, resolution_note=reply
            )
            if note and note.strip():
                await self.note_in(session, ticket, actor=actor, text=note)
            return ticket

    async def deny(
        self, public_id: str, *, actor: str, reason: str, note: str | None = None
    ) -> Ticket:
        """Denied: `reason` is shown to the requester inside the denial (PIPL Art. 50: a
        refusal gives its reasons); `note` stays with the team."""
        reason = _required(reason, "a reason for the denial (--reason, what the requester reads)")
        async with self.db.transaction() as session:
            ticket = await self.tickets.transition_in(
                session, public_id, TicketStatus.DENIED, actor, denial_reason=reason
            )
            if note and note.strip():
                await self.note_in(session, ticket, actor=actor, text=note)
            return ticket


def _chat_parts(text: str, limit: int = CHAT_LIMIT) -> list[str]:
    """A long reply as several chat messages, cut at a paragraph or line where one is near."""
    parts = []
    while len(text) > limit:
        cut = max(text.rfind("\n\n", 0, limit), text.rfind("\n", 0, limit))
        cut = cut if cut > limit // 2 else limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*parts, text]


def _stored(message_id: int, file: OutgoingAttachment) -> StoredAttachment:
    return StoredAttachment.of(message_id, file.filename, file.content_type, file.content)


def _required(text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise TicketError(f"{what} is required")
    return text.strip()
