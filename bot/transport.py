"""Sends the outbox's chat entries: each is one Bot API call, stored as JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, InputFile
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from rightsdesk.sending import PermanentFailure, TemporaryFailure


class TelegramTransport:
    """The chat channel's `Transport` for the core's OutboundSender."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def deliver(self, entry_id: int, raw: bytes, recipient: str) -> None:
        try:
            call = json.loads(raw)
            method, params = str(call["method"]), dict(call["params"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentFailure(f"not a stored Bot API call: {type(exc).__name__}") from exc
        try:
            await self._call(method, params)
        except RetryAfter as exc:
            raise TemporaryFailure(f"RetryAfter: {exc.retry_after}") from exc
        except (Forbidden, BadRequest) as exc:
            # Blocked by the user, chat gone, message too old to edit: never going to work.
            raise PermanentFailure(f"{type(exc).__name__}: {exc.message}"[:300]) from exc
        except InvalidToken as exc:
            raise TemporaryFailure("InvalidToken") from exc
        except (TimedOut, NetworkError) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc.message}"[:300]) from exc
        except TelegramError as exc:  # anything else Telegram says: try again later
            raise TemporaryFailure(type(exc).__name__) from exc

    async def _call(self, method: str, params: dict[str, Any]) -> None:
        markup = params.get("reply_markup")
        if method == "sendMessage":
            await self.bot.send_message(
                chat_id=params["chat_id"],
                text=params["text"],
                reply_markup=InlineKeyboardMarkup.de_json(markup, self.bot) if markup else None,
            )
        elif method == "sendDocument":
            # Uploaded as multipart/form-data, the file's own name and bytes.
            await self.bot.send_document(
                chat_id=params["chat_id"],
                document=InputFile(
                    base64.b64decode(params["document_base64"]), filename=params["filename"]
                ),
            )
        elif method == "editMessageText":
            await self.bot.edit_message_text(
                params["text"], chat_id=params["chat_id"], message_id=params["message_id"]
            )
        else:
            raise PermanentFailure(f"the bot does not send {method!r}")
