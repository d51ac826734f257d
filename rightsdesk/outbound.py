"""Everything we send: composed from templates, written to the outbox, then sent.

    Outbox.compose      a mail about a ticket, rendered (rightsdesk.templating) and written
                        as bytes (rightsdesk.composing): CPU work only, no database
    Outbox.enqueue      in the caller's transaction: the message row (raw MIME) + outbox entry
    Outbox.enqueue_chat the same for a chat message (the row's raw is the Bot API call, JSON)
    Outbox.tell_requester  a notice about a ticket, by mail or by chat, as the ticket came in
    OutboundSender      (rightsdesk.sending) claims due entries of one channel, hands them to
                        that channel's Transport (MailTransport: relay or .eml files; the
                        bot's for chat), marks them sent only when it succeeded, retries with
                        back-off otherwise

A state change and the mail that announces it commit together, so neither exists without the
other; a relay outage delays mail, it never loses it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import uuid
from collections.abc import Sequence
from email.headerregistry import Address
from html import escape
from typing import Any

import zhconv
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.composing import Composed, can_mail, compose_mail, mail_address, one_line
from rightsdesk.config import Settings
from rightsdesk.inbound import is_derived_message_id
from rightsdesk.models import Channel, ContactKind, Message, OutboxEntry, Ticket
from rightsdesk.oversize import ANSWERING_KINDS, too_large_context
from rightsdesk.sending import (
    MailTransport,
    OutboundSender,
    PermanentFailure,
    TemporaryFailure,
    Transport,
)
from rightsdesk.signing import MessageIdSigner
from rightsdesk.templating import BUILTIN_TEMPLATES, OutgoingAttachment, Rendered, Templates

__all__ = [
    "BUILTIN_TEMPLATES",
    "Composed",
    "MailTransport",
    "OutboundSender",
    "Outbox",
    "OutgoingAttachment",
    "PermanentFailure",
    "Rendered",
    "Templates",
    "TemporaryFailure",
    "Transport",
    "can_mail",
    "mail_address",
]


@functools.lru_cache(maxsize=64)
def _our_address(address: str, name: str | None) -> Address:
    """Our own From and Reply-To: the same few for every mail, parsed once."""
    return mail_address(address, name)


def ticket_language(ticket: Ticket, lang: str | None, chosen: bool = False) -> str | None:
    """The language of a mail about `ticket`: the ticket's own, whatever the requester's
    stored language has become since (a later mail with an English subject changes that, not
    the ticket's); `lang` only when the ticket has none or a person chose it for one mail."""
    if chosen and lang:
        return lang
    return ticket.language or lang


def sender_name(configured: str, lang: str | None) -> str:
    """The From name in the mail's script: `outbound.from_name` is written once (simplified
    Chinese, 隐私保护团队), a zh-Hant mail carries it in traditional characters (隱私保護團隊)."""
    return zhconv.convert(configured, "zh-hant") if lang == "zh-Hant" else configured


class Outbox:
    def __init__(self, settings: Settings, signer: MessageIdSigner, clock: Clock) -> None:
        self.settings = settings
        self.signer = signer
        self.clock = clock
        self.templates = Templates(settings.outbound.templates_dir, settings.desk.company_name)
        # One per channel, set when an entry is queued: wakes that channel's sender.
        self.enqueued: dict[str, asyncio.Event] = {c.value: asyncio.Event() for c in Channel}

    async def enqueue(
        self,
        session: AsyncSession,
        *,
        ticket: Ticket,
        kind: str,
        to: str,
        lang: str | None,
        context: dict[str, Any],
        to_name: str | None = None,
        attachments: Sequence[OutgoingAttachment] = (),
        automatic: bool = True,
        lang_chosen: bool = False,
    ) -> OutboxEntry:
        """Compose a mail about `ticket` and queue it, inside the caller's transaction.
        `automatic`: a notice the desk sends by itself (RFC 3834 Auto-Submitted); a person's
        reply is not. `lang` counts only when the ticket has no language, or when a person
        chose it for this one mail (`lang_chosen`: `tickets reply --lang`)."""
        if kind in ANSWERING_KINDS:  # which of their files we could not keep
            cap = self.settings.mail.max_attachment_bytes
            context = {**await too_large_context(session, ticket, cap), **context}
        thread = await _thread_of(session, ticket)
        composed = self.compose(
            ticket=ticket,
            kind=kind,
            to=to,
            lang=lang,
            context=context,
            thread=thread,
            to_name=to_name,
            attachments=attachments,
            automatic=automatic,
            lang_chosen=lang_chosen,
        )
        return await self._queue(session, composed, kind=kind, to=to, ticket_id=ticket.id)

    def compose(
        self,
        *,
        ticket: Ticket,
        kind: str,
        to: str,
        lang: str | None,
        context: dict[str, Any],
        thread: Sequence[tuple[str, str]],
        to_name: str | None = None,
        attachments: Sequence[OutgoingAttachment] = (),
        automatic: bool = True,
        lang_chosen: bool = False,
    ) -> Composed:
        """The mail about `ticket`, rendered and composed: CPU work only (no database), so
        the pipeline's batches do it off the loop and before their write transaction.
        `thread`: (Message-ID, direction) of the ticket's mail so far, oldest first."""
        lang = ticket_language(ticket, lang, lang_chosen)
        to_address = mail_address(to, to_name)  # first: refuses before anything is rendered
        rendered = self._render(kind, lang, ticket, context)
        thread = [(mid, way) for mid, way in thread if not is_derived_message_id(mid)]
        theirs = [mid for mid, direction in thread if direction == "in"]
        in_reply_to, references = None, []
        if thread:
            # Answer the requester's latest mail; reference the thread, theirs first.
            in_reply_to = (theirs or [thread[-1][0]])[-1]
            references = theirs[:1] + [mid for mid, _ in thread if mid not in theirs[:1]]
        sender = self.settings.outbound.from_address
        return compose_mail(
            to=to_address,
            sender=_our_address(sender, sender_name(self.settings.outbound.from_name, lang)),
            reply_to=_our_address(sender, None),
            subject=one_line(rendered.subject, 500),
            date=self.clock.now(),
            message_id=self.signer.new_message_id(ticket.public_id),
            in_reply_to=in_reply_to,
            references=references[-10:],
            # RFC 3834, and Exchange's own switch: automatic replies must not answer us.
            auto_submitted="auto-replied" if automatic else None,
            kind=kind,
            text=rendered.text,
            html=rendered.html,
            attachments=attachments,
        )

    def _render(
        self,
        kind: str,
        lang: str | None,
        ticket: Ticket,
        context: dict[str, Any],
        *,
        signed: bool = True,
    ) -> Rendered:
        return self.templates.render(
            kind,
            lang,
            {
                "ticket_id": ticket.public_id,
                "working_days": self.settings.deadlines.response_working_days,
                # Where the requester talks to us: templates say "reply to this email" or
                # "tell us here in the chat" (a code mail about a chat ticket says the latter).
                "channel": ticket.channel,
                **context,
            },
            signed=signed,
        )

    async def tell_requester(
        self,
        session: AsyncSession,
        *,
        ticket: Ticket,
        kind: str,
        lang: str | None,
        context: dict[str, Any],
        to_name: str | None = None,
    ) -> OutboxEntry:
        """A notice about `ticket` to its requester, where the request came from: a mail to
        the address, or a chat message (the same template's text) to the chat."""
        if ticket.contact_kind == ContactKind.TELEGRAM:
            lang = ticket_language(ticket, lang)
            rendered = self._render(kind, lang, ticket, context, signed=False)
            return await self.enqueue_chat(
                session,
                chat_id=ticket.contact_value,
                text=rendered.text.strip(),
                kind=kind,
                ticket_id=ticket.id,
            )
        return await self.enqueue(
            session,
            ticket=ticket,
            kind=kind,
            to=ticket.contact_value,
            to_name=to_name,
            lang=lang,
            context=context,
        )

    async def enqueue_chat(
        self,
        session: AsyncSession,
        *,
        chat_id: str,
        text: str,
        kind: str,
        ticket_id: int | None = None,
        buttons: list[list[tuple[str, str]]] | None = None,
        method: str = "sendMessage",
        params: dict[str, Any] | None = None,
    ) -> OutboxEntry:
        """Queue a Bot API call (a message to `chat_id` by default) inside the caller's
        transaction. `buttons` are rows of (label, callback data) under the message."""
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text[:4096], **(params or {})}
        if buttons:
            payload["reply_markup"] = {
                "inline_keyboard": [
                    [{"text": label, "callback_data": data} for label, data in row]
                    for row in buttons
                ]
            }
        raw = json.dumps({"method": method, "params": payload}, ensure_ascii=False).encode()
        now = self.clock.now()
        row = Message(
            ticket_id=ticket_id,
            direction="out",
            channel=Channel.TELEGRAM,
            sender="bot",
            envelope_to=[chat_id],
            text=text,
            raw=raw,
            raw_size=len(raw),
            parse_status="parsed",
            details={"kind": kind},
            received_at=now,
            processed_at=now,
        )
        return await self._queue_row(
            session, row, kind=kind, to=chat_id, ticket_id=ticket_id, channel=Channel.TELEGRAM
        )

    async def enqueue_chat_document(
        self,
        session: AsyncSession,
        *,
        chat_id: str,
        attachment: OutgoingAttachment,
        kind: str,
        ticket_id: int | None = None,
    ) -> OutboxEntry:
        """Queue a file for the chat (sendDocument): the stored call carries the bytes, so
        the sender needs nothing but the entry, as for any other call."""
        call = {
            "method": "sendDocument",
            "params": {
                "chat_id": chat_id,
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "document_base64": base64.b64encode(attachment.content).decode("ascii"),
            },
        }
        raw = json.dumps(call, ensure_ascii=False).encode()
        now = self.clock.now()
        row = Message(
            ticket_id=ticket_id,
            direction="out",
            channel=Channel.TELEGRAM,
            sender="bot",
            envelope_to=[chat_id],
            text=attachment.filename,
            raw=raw,
            raw_size=len(raw),
            parse_status="parsed",
            details={"kind": kind, "document": attachment.filename},
            received_at=now,
            processed_at=now,
        )
        return await self._queue_row(
            session, row, kind=kind, to=chat_id, ticket_id=ticket_id, channel=Channel.TELEGRAM
        )

    async def enqueue_unthreaded(
        self,
        session: AsyncSession,
        *,
        kind: str,
        to: str,
        lang: str | None,
        context: dict[str, Any],
        ticket_id: int | None = None,
    ) -> OutboxEntry:
        """A notice to a person that belongs to no ticket's thread yet (the portal's code to
        confirm an address before it becomes a ticket): our From, a plain Message-ID."""
        rendered = self.templates.render(kind, lang, context)
        settings = self.settings.outbound
        domain = settings.from_address.rsplit("@", 1)[-1]
        composed = compose_mail(
            to=mail_address(to),
            sender=_our_address(settings.from_address, settings.from_name),
            subject=one_line(rendered.subject, 500),
            date=self.clock.now(),
            message_id=f"rd-portal.{uuid.uuid4().hex}@{domain}",
            auto_submitted="auto-replied",
            kind=kind,
            text=rendered.text,
            html=rendered.html,
        )
        return await self._queue(session, composed, kind=kind, to=to, ticket_id=ticket_id)

    async def enqueue_internal(
        self,
        session: AsyncSession,
        *,
        kind: str,
        to: str,
        subject: str,
        text: str,
        html: str | None = None,
        ticket_id: int | None = None,
    ) -> OutboxEntry:
        """Mail to our own people (the DPO's digest, reminders): not part of a requester's
        thread, so a plain Message-ID. Without `html`, the HTML part is the text, escaped, in
        a <pre>."""
        settings = self.settings.outbound
        domain = settings.from_address.rsplit("@", 1)[-1]
        composed = compose_mail(
            to=mail_address(to),
            sender=_our_address(settings.from_address, "rightsdesk"),
            subject=one_line(subject, 500),
            date=self.clock.now(),
            message_id=f"rd-internal.{uuid.uuid4().hex}@{domain}",
            auto_submitted="auto-generated",
            kind=kind,
            text=text,
            html=html or f"<pre>{escape(text)}</pre>",
        )
        return await self._queue(session, composed, kind=kind, to=to, ticket_id=ticket_id)

    async def enqueue_internal_to_all(
        self,
        session: AsyncSession,
        recipients: list[str],
        *,
        kind: str,
        subject: str,
        text: str,
        html: str | None = None,
        ticket_id: int | None = None,
    ) -> None:
        """The same mail to each of our own people (the DPO's addresses, escalations)."""
        for address in recipients:
            await self.enqueue_internal(
                session,
                kind=kind,
                to=address,
                subject=subject,
                text=text,
                html=html,
                ticket_id=ticket_id,
            )

    async def _queue(
        self,
        session: AsyncSession,
        composed: Composed,
        *,
        kind: str,
        to: str,
        ticket_id: int | None,
    ) -> OutboxEntry:
        """Keep the composed mail (a message row, direction out) and queue it for sending."""
        row = self.out_row(composed, to=to, ticket_id=ticket_id)
        return await self._queue_row(
            session, row, kind=kind, to=to, ticket_id=ticket_id, channel=Channel.EMAIL
        )

    def out_row(self, composed: Composed, *, to: str, ticket_id: int | None) -> Message:
        """The message row (direction out) that keeps a composed mail."""
        raw = composed.raw
        now = self.clock.now()
        return Message(
            ticket_id=ticket_id,
            direction="out",
            channel=Channel.EMAIL,
            message_id=composed.message_id,
            sender=self.settings.outbound.from_address,
            envelope_to=[to],
            subject=composed.subject,
            text=composed.text,
            raw=raw,
            raw_size=len(raw),
            parse_status="parsed",
            details={},  # given: a default_factory costs a signature inspection an object
            received_at=now,
            processed_at=now,
        )

    async def _queue_row(
        self,
        session: AsyncSession,
        row: Message,
        *,
        kind: str,
        to: str,
        ticket_id: int | None,
        channel: Channel,
    ) -> OutboxEntry:
        session.add(row)
        await session.flush()
        assert row.id is not None
        entry = self.entry(row.id, kind=kind, to=to, ticket_id=ticket_id, channel=channel)
        session.add(entry)
        self.wake_after_commit(session, channel)
        return entry

    def entry(
        self, message_row_id: int, *, kind: str, to: str, ticket_id: int | None, channel: Channel
    ) -> OutboxEntry:
        """The outbox entry that queues a stored message row for its channel's sender."""
        now = self.clock.now()
        return OutboxEntry(
            message_id=message_row_id,
            ticket_id=ticket_id,
            kind=kind,
            channel=channel,
            recipient=to,
            created_at=now,
            next_attempt_at=now,
        )

    def wake_after_commit(self, session: AsyncSession, channel: Channel) -> None:
        """Entries of `channel` were written in this transaction (one here, or rows in bulk):
        wake the channel's sender once they are visible. Woken before the commit, it finds
        nothing and sleeps until its next poll."""
        sync_session = session.sync_session
        flag = f"rightsdesk.wake.{channel.value}"
        if sync_session.info.get(flag):
            return
        sync_session.info[flag] = True
        woken = self.enqueued[channel.value]

        def wake(committed: Session) -> None:
            committed.info.pop(flag, None)
            woken.set()

        event.listen(sync_session, "after_commit", wake, once=True)


async def _thread_of(session: AsyncSession, ticket: Ticket) -> list[tuple[str, str]]:
    """(Message-ID, direction) of the ticket's mail so far, oldest first."""
    found = await session.exec(
        select(Message.message_id, Message.direction)
        .where(Message.ticket_id == ticket.id)
        .where(Message.channel == Channel.EMAIL)
        .where(col(Message.message_id).is_not(None))
        .order_by(col(Message.id))
    )
    return [(mid, direction) for mid, direction in found.all() if mid]
