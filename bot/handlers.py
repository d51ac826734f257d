"""The bot's handlers: each turns a Telegram update into one call of the core's ChatDesk.

Thin on purpose (python-telegram-bot's own examples): what to answer is decided in
rightsdesk/chat/; here is only which update goes where.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from rightsdesk.chat import ChatDesk, ChatDocument, ChatUpdate, update_key

log = logging.getLogger("rightsdesk.bot")

PRIVATE = filters.ChatType.PRIVATE


def chat_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> ChatUpdate:
    chat = update.effective_chat
    user = update.effective_user
    return ChatUpdate(
        key=update_key(context.bot.id, update.update_id),
        chat_id=str(chat.id if chat is not None else user.id if user is not None else 0),
        user_name=user.full_name if user is not None else None,
        language_code=user.language_code if user is not None else None,
    )


def desk_of(context: ContextTypes.DEFAULT_TYPE) -> ChatDesk:
    desk: ChatDesk = context.bot_data["chat"]
    return desk


def _argument(context: ContextTypes.DEFAULT_TYPE) -> str:
    return " ".join(context.args or [])


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await desk_of(context).start(chat_update(update, context))


async def language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await desk_of(context).set_language(chat_update(update, context), _argument(context))


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await desk_of(context).status(chat_update(update, context))


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await desk_of(context).cancel(chat_update(update, context), _argument(context))


async def unlink(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await desk_of(context).unlink(chat_update(update, context))


async def new_request(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await desk_of(context).new_request(chat_update(update, context))


async def text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    said = (message.text or "") if message else ""
    await desk_of(context).text(chat_update(update, context), said)


async def choice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if query is None:
        return
    question = query.message if isinstance(query.message, Message) else None
    toast = await desk_of(context).choose(
        chat_update(update, context),
        query.data or "",
        question.message_id if question else None,
        (question.text or "") if question else "",
    )
    try:
        await query.answer(toast)  # stops the button's spinner; cosmetic, so best effort
    except TelegramError as exc:
        log.info("could not answer a button tap: %s", type(exc).__name__)


async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    if message.document is not None:
        sent = ChatDocument(
            file_id=message.document.file_id,
            filename=message.document.file_name,
            content_type=(message.document.mime_type or "application/octet-stream").lower(),
            size=message.document.file_size,
        )
    else:  # a photo: Telegram offers several sizes, the last is the largest
        photo = message.photo[-1]
        sent = ChatDocument(photo.file_id, None, "image/jpeg", photo.file_size)

    async def download() -> bytes:
        file = await context.bot.get_file(sent.file_id)
        return bytes(await file.download_as_bytearray())

    await desk_of(context).document(chat_update(update, context), sent, download)


def refuse(what: str) -> object:
    async def polite_refusal(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await desk_of(context).polite_refusal(chat_update(update, context), what)

    return polite_refusal


async def log_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    # The kind of failure only: an exception's text can carry what the user wrote.
    error = context.error
    log.error("a chat update failed: %s", type(error).__name__ if error else "unknown")
    if isinstance(update, Update):
        context.bot_data.setdefault("failed", set()).add(update.update_id)


def register(application: Application, chat: ChatDesk) -> None:  # type: ignore[type-arg]
    application.bot_data["chat"] = chat
    # First match wins, top to bottom.
    application.add_handlers(
        [
            MessageHandler(filters.UpdateType.EDITED, refuse("edited")),  # type: ignore[arg-type]
            MessageHandler(filters.UpdateType.MESSAGE & ~PRIVATE, refuse("group")),  # type: ignore[arg-type]
            CommandHandler(["start", "help"], start),
            CommandHandler("lang", language),
            CommandHandler("status", status),
            CommandHandler("cancel", cancel),
            CommandHandler("unlink", unlink),
            CommandHandler("new", new_request),
            MessageHandler(filters.COMMAND, refuse("command")),  # type: ignore[arg-type]
            MessageHandler(filters.TEXT, text),
            MessageHandler(filters.Document.ALL | filters.PHOTO, document),
            CallbackQueryHandler(choice),
            MessageHandler(filters.ALL, refuse("unsupported")),  # type: ignore[arg-type]
        ]
    )
    application.add_error_handler(log_error)
