"""Everything we send: composed from templates, written to the outbox, then sent.

    Outbox.enqueue      in the caller's transaction: the message row (raw MIME) + outbox entry
    Outbox.enqueue_chat the same for a chat message (the row's raw is the Bot API call, JSON)
    Outbox.tell_requester  a notice about a ticket, by mail or by chat, as the ticket came in
    OutboundSender      claims due entries of one channel, hands them to that channel's
                        Transport (MailTransport: relay or .eml files; the bot's for chat),
                        marks them sent only when it succeeded, retries with back-off otherwise

A state change and the mail that announces it commit together, so neither exists without the
other; a relay outage delays mail, it never loses it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import zhconv
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.config import Settings
from rightsdesk.db import Database
from rightsdesk.models import Channel, ContactKind, Message, OutboxEntry, Ticket
from rightsdesk.oversize import ANSWERING_KINDS, too_large_context
from rightsdesk.signing import MessageIdSigner
from rightsdesk.templating import BUILTIN_TEMPLATES, OutgoingAttachment, Rendered, Templates
from rightsdesk.waiting import wait_or_stop

log = logging.getLogger("rightsdesk.outbound")

__all__ = [
    "BUILTIN_TEMPLATES",
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

LEASE = dt.timedelta(minutes=5)  # a claimed entry is retried after this if its sender died
MAX_BACKOFF = dt.timedelta(hours=1)


class UnmailableAddress(ValueError):
    """An address that no standard mail header can carry: we cannot write to it."""


def mail_address(address: str, name: str | None = None) -> Address:
    """A header-safe address, or UnmailableAddress. A name that breaks the header is dropped;
    an address that does is refused."""
    try:
        return Address(_one_line(name or ""), addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        pass
    try:
        return Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError):
        raise UnmailableAddress("the address cannot be written in a mail header") from None


def can_mail(address: str) -> bool:
    try:
        mail_address(address)
    except UnmailableAddress:
        return False
    return True


def _one_line(value: str, limit: int = 200) -> str:
    """Header text from anything a requester wrote: CR/LF and control characters cannot
    survive, so nobody can add a header through a name or a subject."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:limit]


@dataclass(frozen=True)
class Composed:
    """A mail composed and not queued yet (`Outbox.compose`)."""

    mime: EmailMessage
    text: str

    @property
    def message_id(self) -> str:
        return str(self.mime["Message-ID"]).strip("<>")


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
        return await self._queue(
            session, composed.mime, composed.text, kind=kind, to=to, ticket_id=ticket.id
        )

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
        rendered = self._render(kind, lang, ticket, context)
        message_id = self.signer.new_message_id(ticket.public_id)
        theirs = [mid for mid, direction in thread if direction == "in"]
        mime = EmailMessage()
        sender = self.settings.outbound.from_address
        mime["To"] = mail_address(to, to_name)  # first: refuses before anything is composed
        mime["From"] = mail_address(sender, sender_name(self.settings.outbound.from_name, lang))
        mime["Reply-To"] = mail_address(sender)
        mime["Subject"] = _one_line(rendered.subject, 500)
        mime["Date"] = format_datetime(self.clock.now())
        mime["Message-ID"] = f"<{message_id}>"
        if thread:
            # Answer the requester's latest mail; reference the thread, theirs first.
            mime["In-Reply-To"] = f"<{(theirs or [thread[-1][0]])[-1]}>"
            references = theirs[:1] + [mid for mid, _ in thread if mid not in theirs[:1]]
            mime["References"] = " ".join(f"<{r}>" for r in references[-10:])
        # RFC 3834, and Exchange's own switch: automatic replies must not answer us.
        if automatic:
            mime["Auto-Submitted"] = "auto-replied"
        mime["X-Auto-Response-Suppress"] = "All"
        mime["X-Rightsdesk-Kind"] = kind
        mime.set_content(rendered.text, charset="utf-8")
        mime.add_alternative(rendered.html, subtype="html", charset="utf-8")
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            # The policy writes a non-ASCII name as RFC 2231 (filename*=utf-8''...).
            mime.add_attachment(
                attachment.content,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=_one_line(attachment.filename, 255),
            )
        return Composed(mime, rendered.text)

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
        mime = EmailMessage()
        mime["To"] = mail_address(to)
        mime["From"] = mail_address(settings.from_address, settings.from_name)
        mime["Subject"] = _one_line(rendered.subject, 500)
        mime["Date"] = format_datetime(self.clock.now())
        mime["Message-ID"] = f"<rd-portal.{uuid.uuid4().hex}@{domain}>"
        mime["Auto-Submitted"] = "auto-replied"
        mime["X-Auto-Response-Suppress"] = "All"
        mime["X-Rightsdesk-Kind"] = kind
        mime.set_content(rendered.text, charset="utf-8")
        mime.add_alternative(rendered.html, subtype="html", charset="utf-8")
        return await self._queue(
            session, mime, rendered.text, kind=kind, to=to, ticket_id=ticket_id
        )

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
        mime = EmailMessage()
        mime["To"] = mail_address(to)
        mime["From"] = mail_address(settings.from_address, "rightsdesk")
        mime["Subject"] = _one_line(subject, 500)
        mime["Date"] = format_datetime(self.clock.now())
        mime["Message-ID"] = f"<rd-internal.{uuid.uuid4().hex}@{domain}>"
        mime["Auto-Submitted"] = "auto-generated"
        mime["X-Auto-Response-Suppress"] = "All"
        mime["X-Rightsdesk-Kind"] = kind
        mime.set_content(text, charset="utf-8")
        html = html or f"<pre>{escape(text)}</pre>"
        mime.add_alternative(html, subtype="html", charset="utf-8")
        return await self._queue(session, mime, text, kind=kind, to=to, ticket_id=ticket_id)

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
        mime: EmailMessage,
        text: str,
        *,
        kind: str,
        to: str,
        ticket_id: int | None,
    ) -> OutboxEntry:
        """Keep the composed mail (a message row, direction out) and queue it for sending."""
        row = self.out_row(mime, text, to=to, ticket_id=ticket_id)
        return await self._queue_row(
            session, row, kind=kind, to=to, ticket_id=ticket_id, channel=Channel.EMAIL
        )

    def out_row(self, mime: EmailMessage, text: str, *, to: str, ticket_id: int | None) -> Message:
        """The message row (direction out) that keeps a composed mail."""
        raw = mime.as_bytes()
        now = self.clock.now()
        return Message(
            ticket_id=ticket_id,
            direction="out",
            channel=Channel.EMAIL,
            message_id=str(mime["Message-ID"]).strip("<>"),
            sender=self.settings.outbound.from_address,
            envelope_to=[to],
            subject=mime["Subject"],
            text=text,
            raw=raw,
            raw_size=len(raw),
            parse_status="parsed",
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
        self._wake_after_commit(session, channel)
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
        """Entries of `channel` were written in this transaction (by rows, in bulk)."""
        self._wake_after_commit(session, channel)

    def _wake_after_commit(self, session: AsyncSession, channel: Channel) -> None:
        """Wake the channel's sender once the entry is visible: woken before the commit, it
        finds nothing and sleeps until its next poll."""
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


class PermanentFailure(Exception):
    """The far end will never take this one (a 5xx, a blocked bot): stop trying."""


class TemporaryFailure(Exception):
    """Try again later, with back-off."""


class Transport(Protocol):
    """Delivers one queued message of a channel; raises PermanentFailure or TemporaryFailure."""

    async def deliver(self, entry_id: int, raw: bytes, recipient: str) -> None: ...


class MailTransport:
    """Mail through the configured relay, or as .eml files when no relay is configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.outbound
        self.password = settings.secret("outbound", "relay_password")

    async def deliver(self, entry_id: int, raw: bytes, recipient: str) -> None:
        settings = self.settings
        if not settings.relay_host:
            # fsync blocks: in a thread, or every SMTP session would wait on the disk.
            try:
                await asyncio.to_thread(_write_eml, Path(settings.outbox_dir), entry_id, raw)
            except OSError as exc:  # full, read-only, gone: the folder may come back
                raise TemporaryFailure(_os_error(exc)) from exc
            return
        try:
            await aiosmtplib.send(
                raw,
                sender=settings.from_address,
                recipients=[recipient],
                hostname=settings.relay_host,
                port=settings.relay_port,
                start_tls=settings.relay_starttls,
                username=settings.relay_username or None,
                password=self.password,
                timeout=30,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            if refused is not None and 500 <= refused.code < 600:
                raise PermanentFailure(f"{refused.code} {refused.message}"[:300]) from exc
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}"[:300]) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:  # the relay will never take it: say so, don't hammer
                raise PermanentFailure(f"{exc.code} {exc.message}"[:300]) from exc
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}"[:300]) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}"[:300]) from exc


class Quiet(Protocol):
    async def wait_for_quiet(self, quiet_seconds: float, at_most: float) -> None: ...


class OutboundSender:
    """Sends one channel's queued messages through that channel's transport."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        outbox: Outbox,
        transport: Transport,
        channel: Channel = Channel.EMAIL,
        doors: Quiet | None = None,
        replica: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.transport = transport
        self.channel = channel
        self.doors = doors  # replies wait while a burst of mail is arriving
        self.replica = replica  # written on its claims: who holds them

    async def send_due(self, limit: int = 50) -> int:
        """Send what is due now; returns how many were sent."""
        sent = 0
        for entry_id, raw, recipient in await self._claim(limit):
            try:
                await self.transport.deliver(entry_id, raw, recipient)
            except PermanentFailure as exc:
                await self._failed(entry_id, str(exc), permanent=True)
            except TemporaryFailure as exc:
                await self._failed(entry_id, str(exc), permanent=False)
            except Exception as exc:  # a transport's bug must not strand the entry's claim
                await self._failed(entry_id, type(exc).__name__, permanent=False)
            else:
                await self._sent(entry_id)
                sent += 1
        return sent

    async def run(self, stop: asyncio.Event, poll_seconds: float = 5.0) -> None:
        enqueued = self.outbox.enqueued[self.channel.value]
        while not stop.is_set():
            enqueued.clear()
            if self.doors is not None:
                await self.doors.wait_for_quiet(0.05, 2.0)
            await self.send_due()
            await wait_or_stop(enqueued, stop, poll_seconds)

    async def _claim(self, limit: int) -> list[tuple[int, bytes, str]]:
        """Take due entries under a lease, so that a second sender (or replica) skips them."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            entries = (
                await session.exec(
                    select(OutboxEntry)
                    .where(OutboxEntry.status == "pending")
                    .where(OutboxEntry.channel == self.channel)
                    .where(col(OutboxEntry.next_attempt_at) <= now)
                    .order_by(col(OutboxEntry.id))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            claimed = []
            for entry in entries:
                entry.next_attempt_at = now + LEASE
                entry.claimed_by = self.replica
                session.add(entry)
                message = await session.get_one(Message, entry.message_id)
                assert entry.id is not None
                claimed.append((entry.id, message.raw or b"", entry.recipient))
            return claimed

    async def _sent(self, entry_id: int) -> None:
        async with self.db.transaction() as session:
            entry = await session.get_one(OutboxEntry, entry_id)
            entry.status = "sent"
            entry.sent_at = self.clock.now()
            entry.attempts += 1
            entry.last_error = None
            entry.claimed_by = None
            session.add(entry)

    async def _failed(self, entry_id: int, error: str, *, permanent: bool) -> None:
        async with self.db.transaction() as session:
            entry = await session.get_one(OutboxEntry, entry_id)
            entry.attempts += 1
            entry.last_error = error
            entry.claimed_by = None
            if permanent:
                entry.status = "failed"
            else:
                delay = min(dt.timedelta(seconds=30 * 2 ** (entry.attempts - 1)), MAX_BACKOFF)
                entry.next_attempt_at = self.clock.now() + delay
            session.add(entry)
        log.warning(
            "outbound #%d %s: %s",
            entry_id,
            "failed for good" if permanent else "will be retried",
            error.split(":")[0],
        )

    async def pending(self) -> list[OutboxEntry]:
        async with self.db.reading() as session:
            found = await session.exec(
                select(OutboxEntry)
                .where(OutboxEntry.status != "sent")
                .order_by(col(OutboxEntry.id))
            )
            return list(found.all())


def _os_error(exc: OSError) -> str:
    """The error without the path (which names nothing personal, but is noise)."""
    if exc.errno is not None:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {os.strerror(exc.errno)}"
    return type(exc).__name__


def _write_eml(folder: Path, entry_id: int, raw: bytes) -> None:
    """No relay configured: each mail becomes a file, written whole or not at all, once.

    The file is named by the outbox entry, so a mail sent again after a crash (written, then
    killed before it was marked sent) finds its file there and is not written twice. A write
    that fails (a full disk) leaves no temporary file behind."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{entry_id:08d}.eml"
    if final.exists():
        return
    temporary = folder / f".{entry_id:08d}.eml.tmp"
    try:
        with temporary.open("wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
