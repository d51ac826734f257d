"""The chat door: receives Telegram updates, stores each raw before Telegram is told it
arrived, then hands the stored updates, in order, to the handlers (bot/handlers.py).

    long polling   getUpdates → Inbox.accept (durable) → the next getUpdates' offset confirms
    webhook        POST → secret checked (constant time) → Inbox.accept → 200

A crash between storing and handling leaves the update "stored": it is handled at the next
start (or the next batch). Telegram resending an update it already gave us is deduplicated by
the Inbox (bot id + update id), so nothing is lost and nothing is handled twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import tornado.netutil
import tornado.web
from sqlmodel import col, select, update
from telegram import Bot, Update
from telegram.error import InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder
from tornado.httpserver import HTTPServer

from bot.handlers import register
from rightsdesk.chat import ChatDesk, update_key
from rightsdesk.clock import Clock
from rightsdesk.config_sections import TelegramSettings
from rightsdesk.db import Database
from rightsdesk.models import Channel, Message
from rightsdesk.pipeline import Delivery, Inbox
from rightsdesk.waiting import sleep_or_stop, wait_or_stop

log = logging.getLogger("rightsdesk.bot")

MAX_UPDATE_BYTES = 1024 * 1024  # an update is JSON about a message, never the file itself
WEBHOOK_PATH = "/telegram"


class TelegramDoor:
    def __init__(
        self,
        settings: TelegramSettings,
        token: str,
        inbox: Inbox,
        db: Database,
        clock: Clock,
        chat: ChatDesk,
        webhook_secret: str = "",
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.db = db
        self.clock = clock
        self.webhook_secret = webhook_secret
        # No python-telegram-bot Updater: it confirms updates before our handlers store them.
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(token)
            .base_url(settings.base_url)
            .base_file_url(settings.base_file_url)
            .updater(None)
            .build()
        )
        register(self.application, chat)
        self._arrived = asyncio.Event()
        self._server: HTTPServer | None = None
        self.webhook_port: int | None = None

    @property
    def bot(self) -> Bot:
        bot: Bot = self.application.bot
        return bot

    # ---- running ---------------------------------------------------------------------------

    async def start(self, stop: asyncio.Event) -> bool:
        """Say hello to the Bot API (getMe), retrying while the network is down. False when
        the token is refused or `stop` was set first."""
        delay = 1.0
        while not stop.is_set():
            try:
                await self.application.initialize()
                return True
            except InvalidToken:
                log.error("the Bot API refused the token: the chat door stays closed")
                return False
            except TelegramError as exc:
                log.warning(
                    "Bot API unreachable (%s); retrying in %.0f s", type(exc).__name__, delay
                )
                await sleep_or_stop(stop, delay)
                delay = min(delay * 2, 60.0)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Handle what a crash left stored, then receive until `stop`."""
        handling = asyncio.create_task(self._handle_arrivals(stop), name="chat-handler")
        self._arrived.set()  # what an earlier run stored but did not handle
        receiving = asyncio.create_task(
            self._poll(stop) if self.settings.mode == "polling" else self._serve_webhook(stop),
            name=f"chat-{self.settings.mode}",
        )
        stopping = asyncio.create_task(stop.wait())
        try:
            # Until `stop`, or until one of the two dies: its failure goes up to the
            # supervisor (logged, restarted with back-off), never silently lost.
            await asyncio.wait([stopping, handling, receiving], return_when=asyncio.FIRST_COMPLETED)
            for task in (handling, receiving):
                if task.done() and not stop.is_set():
                    task.result()  # raises what killed it
                    raise RuntimeError(f"{task.get_name()} ended")
        finally:
            stopping.cancel()
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            if self._server is not None:
                self._server.stop()
            await asyncio.wait([handling], timeout=3.0)
            handling.cancel()
            await asyncio.gather(handling, return_exceptions=True)

    async def close(self) -> None:
        if self.application._initialized:
            await self.application.shutdown()

    # ---- receiving -------------------------------------------------------------------------

    async def store(self, update_id: int, raw: bytes) -> None:
        """Durably, before anyone tells Telegram the update arrived."""
        await self.inbox.accept(Delivery(Channel.TELEGRAM, raw, update_key(self.bot.id, update_id)))
        self._arrived.set()

    async def _poll(self, stop: asyncio.Event) -> None:
        await self.bot.delete_webhook()  # getUpdates is refused while a webhook is set
        offset: int | None = None
        delay = 1.0
        while not stop.is_set():
            try:
                # The offset confirms every update before it: all of them are stored by now.
                updates = await self.bot.get_updates(
                    offset=offset,
                    timeout=self.settings.poll_timeout_seconds,
                    allowed_updates=Update.ALL_TYPES,
                )
                for received in updates:
                    raw = json.dumps(received.to_dict(), ensure_ascii=False).encode()
                    await self.store(received.update_id, raw)
                    offset = received.update_id + 1
                delay = 1.0
            except RetryAfter as exc:
                await sleep_or_stop(stop, float(_seconds(exc.retry_after)))
            except (NetworkError, TelegramError, OSError) as exc:
                # Not stored means not confirmed: Telegram gives them again next time.
                log.warning("getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, delay)
                await sleep_or_stop(stop, delay)
                delay = min(delay * 2, 60.0)
            except Exception as exc:  # storage: the same, Telegram keeps what we did not take
                log.error("storing chat updates failed (%s)", type(exc).__name__)
                await sleep_or_stop(stop, delay)
                delay = min(delay * 2, 60.0)

    async def _serve_webhook(self, stop: asyncio.Event) -> None:
        app = tornado.web.Application([(WEBHOOK_PATH, _WebhookHandler, {"door": self})])
        self._server = HTTPServer(app, max_body_size=MAX_UPDATE_BYTES)
        sockets = tornado.netutil.bind_sockets(
            self.settings.webhook_port, self.settings.webhook_host
        )
        self._server.add_sockets(sockets)
        self.webhook_port = int(sockets[0].getsockname()[1])
        log.info(
            "chat webhook listening on %s:%d%s",
            self.settings.webhook_host,
            self.webhook_port,
            WEBHOOK_PATH,
        )
        while not stop.is_set():
            try:
                await self.bot.set_webhook(
                    self.settings.webhook_url,
                    secret_token=self.webhook_secret,
                    allowed_updates=Update.ALL_TYPES,
                )
                break
            except TelegramError as exc:
                log.warning("setWebhook failed (%s); retrying", type(exc).__name__)
                await sleep_or_stop(stop, 10.0)
        await stop.wait()

    # ---- handling --------------------------------------------------------------------------

    async def _handle_arrivals(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_or_stop(self._arrived, stop, None)
            if stop.is_set():
                return
            self._arrived.clear()
            try:
                await self.handle_stored()
            except Exception as exc:  # the database, most likely: try again on the next arrival
                log.error("handling chat updates failed (%s)", type(exc).__name__)
                await sleep_or_stop(stop, 1.0)
                self._arrived.set()

    async def handle_stored(self) -> int:
        """Hand every stored, unhandled update to the handlers, oldest first."""
        handled = 0
        last = 0
        while True:
            async with self.db.reading() as session:
                found = await session.exec(
                    select(Message.id, Message.raw)
                    .where(Message.channel == Channel.TELEGRAM)
                    .where(Message.direction == "in")
                    .where(Message.parse_status == "stored")
                    .where(col(Message.id) > last)
                    .order_by(col(Message.id))
                    .limit(100)
                )
                rows = list(found.all())
            if not rows:
                return handled
            for row_id, raw in rows:
                assert row_id is not None
                last = row_id
                await self._handle(row_id, raw or b"")
                handled += 1

    async def _handle(self, row_id: int, raw: bytes) -> None:
        try:
            received = Update.de_json(json.loads(raw), self.bot)
        except (ValueError, TypeError, KeyError) as exc:
            await self._settle(row_id, "failed", f"not a Telegram update: {type(exc).__name__}")
            return
        failed: set[int] = self.application.bot_data.setdefault("failed", set())
        failed.discard(received.update_id)
        await self.application.process_update(received)
        # A handler claims its update. Still stored: no handler wanted it (a member update,
        # a poll), or the handler failed (logged by the error handler).
        if received.update_id in failed:
            await self._settle(row_id, "failed", "the handler failed")
        else:
            await self._settle(row_id, "ignored", None)

    async def _settle(self, row_id: int, status: str, error: str | None) -> None:
        async with self.db.transaction() as session:
            await session.exec(
                update(Message)
                .where(col(Message.id) == row_id)
                .where(col(Message.parse_status) == "stored")
                .values(parse_status=status, parse_error=error, processed_at=self.clock.now())
            )


class _WebhookHandler(tornado.web.RequestHandler):
    def initialize(self, door: TelegramDoor) -> None:
        self.door = door

    async def post(self) -> None:
        given = self.request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        # Constant time: the secret must not leak one character at a time.
        if not hmac.compare_digest(given.encode(), self.door.webhook_secret.encode()):
            self.set_status(403)
            return
        try:
            update_id = int(json.loads(self.request.body)["update_id"])
        except (ValueError, KeyError, TypeError):
            self.set_status(400)
            return
        try:
            await self.door.store(update_id, self.request.body)
        except Exception as exc:  # not stored: a 5xx makes Telegram send it again
            log.error("storing a chat update failed (%s)", type(exc).__name__)
            self.set_status(503)
            return
        self.set_status(200)


def derived_webhook_secret(signing_key: bytes) -> str:
    """The webhook secret when none is configured: derived from the desk's signing key, so
    every replica agrees on it. Telegram allows A-Z, a-z, 0-9, _ and -."""
    return hmac.new(signing_key, b"telegram-webhook", hashlib.sha256).hexdigest()


def _seconds(value: Any) -> float:
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)
