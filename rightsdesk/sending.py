"""Sending what the outbox holds: each channel's sender claims due entries and hands them to
its transport (rightsdesk.outbound queues them).

    OutboundSender      claims due entries of one channel, hands them to that channel's
                        Transport (MailTransport: relay or .eml files; the bot's for chat),
                        marks them sent only when it succeeded, retries with back-off otherwise
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiosmtplib
from sqlmodel import col, select

from rightsdesk.clock import Clock
from rightsdesk.config import Settings
from rightsdesk.db import Database
from rightsdesk.models import Channel, Message, OutboxEntry
from rightsdesk.waiting import wait_or_stop

if TYPE_CHECKING:  # outbound imports this module (its names are outbound's too)
    from rightsdesk.outbound import Outbox

log = logging.getLogger("rightsdesk.outbound")

LEASE = dt.timedelta(minutes=5)  # a claimed entry is retried after this if its sender died
MAX_BACKOFF = dt.timedelta(hours=1)


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
