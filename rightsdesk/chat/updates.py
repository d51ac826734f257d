"""What a chat update is, as the bot hands it to the desk."""

from __future__ import annotations

from dataclasses import dataclass

from rightsdesk.languages import normalise

ACTOR = "system:chat"


@dataclass(frozen=True)
class ChatUpdate:
    """One update from the chat, as the bot received (and stored) it."""

    key: str  # the stored update's dedupe key (see `update_key`)
    chat_id: str
    user_name: str | None = None
    language_code: str | None = None  # the user's client language


@dataclass(frozen=True)
class ChatDocument:
    file_id: str
    filename: str | None
    content_type: str
    size: int | None  # as Telegram announces it; checked again after download


def update_key(bot_id: int | str, update_id: int) -> str:
    """What makes a chat update the same update: the bot and Telegram's update id."""
    return f"telegram:{bot_id}:{update_id}"


def language_of(language_code: str | None) -> str:
    """The chat's first language, from the user's client: zh-TW, zh-HK, zh-Hant are traditional;
    anything not Chinese is English; none at all is simplified Chinese."""
    if not language_code:
        return "zh"
    return normalise(language_code) or "en"
