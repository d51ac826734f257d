"""The IMAP door: watch the privacy mailbox; move (or flag) a message only once it is durable.

imapclient blocks, so every call runs in a worker thread, one at a time. Progress is kept per
folder as (UIDVALIDITY, last UID) in the database. The order for each message is:
fetch with BODY.PEEK (the server marks nothing) -> Inbox.accept (commit) -> move or flag ->
advance last UID. A crash after the commit and before the move fetches the message again on
restart; the Inbox recognises its Message-ID, so it is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from imapclient import IMAPClient
from sqlmodel import select

from intake.mail import OFFLOAD_OVER_BYTES, mail_delivery
from rightsdesk.clock import Clock
from rightsdesk.config_sections import ImapSettings, MailSettings
from rightsdesk.db import Database
from rightsdesk.models import Channel, MailboxState, Message
from rightsdesk.pipeline import Inbox
from rightsdesk.waiting import sleep_or_stop

log = logging.getLogger("rightsdesk.imap")

T = TypeVar("T")
FETCH_BATCH = 25
IDLE_RESTART_SECONDS = 25 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes
IDLE_CHECK_SECONDS = 1.0  # how quickly a stop request is noticed
MAX_BACKOFF_SECONDS = 60.0


class ImapWatcher:
    def __init__(
        self,
        settings: ImapSettings,
        password: str,
        mail: MailSettings,
        inbox: Inbox,
        db: Database,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.password = password
        self.mail = mail
        self.inbox = inbox
        self.db = db
        self.clock = clock
        self.client: IMAPClient | None = None

    # ---- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep, then wait for new mail (IDLE, else polling); reconnect with back-off."""
        backoff = 1.0
        while not stop.is_set():
            try:
                await self.connect()
                backoff = 1.0
                while not stop.is_set():
                    await self.sweep()
                    await self._wait_for_mail(stop)
            except Exception as exc:  # network or database trouble: never stop watching for good
                log.warning("IMAP problem: %s; retrying in %.0fs", type(exc).__name__, backoff)
                await self._close_quietly()
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        await self._close_quietly()

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    async def connect(self) -> None:
        settings = self.settings
        client: IMAPClient = await self._call(
            IMAPClient,
            settings.host,
            port=settings.port,
            ssl=settings.ssl,
            timeout=settings.timeout_seconds,
        )
        self.client = client
        await self._call(client.login, settings.username, self.password)
        target = settings.processed_folder
        if target and not await self._call(client.folder_exists, target):
            await self._call(client.create_folder, target)
        log.info("IMAP connected to %s:%d", settings.host, settings.port)

    async def _close_quietly(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        with contextlib.suppress(Exception):  # the connection may already be gone
            await self._call(client.logout)

    async def _wait_for_mail(self, stop: asyncio.Event) -> None:
        client = self.client
        assert client is not None
        if b"IDLE" not in await self._call(client.capabilities):
            await sleep_or_stop(stop, self.settings.poll_seconds)
            return
        await self._call(client.idle)
        started = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() - started < IDLE_RESTART_SECONDS:
                responses = await self._call(client.idle_check, IDLE_CHECK_SECONDS)
                if any(isinstance(r, tuple) and r[1:2] == (b"EXISTS",) for r in responses):
                    break
        finally:
            await self._call(client.idle_done)

    # ---- one sweep of the folder ---------------------------------------------------------------

    async def sweep(self) -> int:
        """Store every message above the last UID. Returns how many were new to the desk."""
        client = self.client
        assert client is not None
        folder = self.settings.folder
        selected = await self._call(client.select_folder, folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        last_uid = await self._last_uid(folder, uidvalidity)
        found = await self._call(client.search, ["UID", f"{last_uid + 1}:*"])
        # "n:*" always matches the newest message, even when its UID is below n.
        uids = sorted(uid for uid in found if uid > last_uid)
        new = 0
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            sizes = await self._call(client.fetch, batch, ["RFC822.SIZE"])
            small = [
                u
                for u in batch
                if int(sizes.get(u, {}).get(b"RFC822.SIZE", 0)) <= self.mail.max_message_bytes
            ]
            for uid in batch:
                if uid not in small:
                    await self._record_too_large(folder, uidvalidity, uid, sizes.get(uid, {}))
            bodies = await self._call(client.fetch, small, ["BODY.PEEK[]"]) if small else {}
            for uid in batch:
                if uid in small:
                    raw = bodies.get(uid, {}).get(b"BODY[]")
                    if raw is None:
                        continue  # expunged meanwhile
                    to = [self.settings.username.lower()]
                    if len(raw) > OFFLOAD_OVER_BYTES:  # hashing 25 MB is not the loop's job
                        delivery = await asyncio.to_thread(mail_delivery, bytes(raw), None, to)
                    else:
                        delivery = mail_delivery(bytes(raw), envelope_to=to)
                    accepted = await self.inbox.accept(delivery)
                    new += 0 if accepted.duplicate else 1
                await self._mark_done(uid)
                await self._advance(folder, uidvalidity, uid)
        if uids:
            if self.settings.processed_folder:
                await self._call(client.expunge)
            log.info("IMAP sweep: %d message(s) seen, %d new", len(uids), new)
        return new

    async def _mark_done(self, uid: int) -> None:
        client = self.client
        assert client is not None
        target = self.settings.processed_folder
        if not target:
            await self._call(client.add_flags, [uid], [b"\\Seen"])
        elif b"MOVE" in await self._call(client.capabilities):
            await self._call(client.move, [uid], target)
        else:
            await self._call(client.copy, [uid], target)
            await self._call(client.add_flags, [uid], [b"\\Deleted"])

    async def _record_too_large(
        self, folder: str, uidvalidity: int, uid: int, meta: dict[bytes, Any]
    ) -> None:
        """Never downloaded; listed for the DPO by `rightsdesk intake failed`."""
        size = int(meta.get(b"RFC822.SIZE", 0))
        key = f"imap-too-large:{folder}:{uidvalidity}:{uid}"
        async with self.db.transaction() as session:
            exists = (
                await session.exec(select(Message.id).where(Message.dedupe_key == key))
            ).first()
            if exists is None:
                session.add(
                    Message(
                        direction="in",
                        channel=Channel.EMAIL,
                        dedupe_key=key,
                        raw=None,
                        raw_size=size,
                        parse_status="too_large",
                        parse_error=f"{size} bytes, over mail.max_message_bytes; left on server",
                        received_at=self.clock.now(),
                        processed_at=self.clock.now(),
                    )
                )
        log.warning("IMAP message uid %d is %d bytes: not downloaded", uid, size)

    async def _last_uid(self, folder: str, uidvalidity: int) -> int:
        async with self.db.transaction() as session:
            state = await session.get(MailboxState, folder)
            if state is None:
                session.add(MailboxState(folder=folder, uidvalidity=uidvalidity, last_uid=0))
                return 0
            if state.uidvalidity != uidvalidity:
                # A new UIDVALIDITY means old UIDs mean nothing: read the folder again;
                # the Inbox's dedupe keeps what we already have from being stored twice.
                log.warning("IMAP folder UIDVALIDITY changed: rescanning")
                state.uidvalidity, state.last_uid = uidvalidity, 0
                session.add(state)
                return 0
            return state.last_uid

    async def _advance(self, folder: str, uidvalidity: int, uid: int) -> None:
        async with self.db.transaction() as session:
            state = await session.get(MailboxState, folder)
            if state is not None and state.uidvalidity == uidvalidity and uid > state.last_uid:
                state.last_uid = uid
                session.add(state)
