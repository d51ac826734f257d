"""The in-app support bot, driven through python-telegram-bot's real HTTP client against a Bot
API server on loopback (tests/fake_bot_api.py): whole conversations, in both languages, on
SQLite and PostgreSQL, with the trained classifier."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import col, func, select

from classifiers.model import RightsClassifier, model_exists
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import (
    Account,
    Channel,
    ChatConversation,
    Message,
    OutboxEntry,
    RequestType,
    StoredAttachment,
    Ticket,
    TicketStatus,
    VerificationChallenge,
)
from rightsdesk.service import Desk, serve_chat, telegram_door
from tests.conftest import deliver, mail
from tests.fake_bot_api import BOT_ID, TOKEN, FakeBotApi
from tests.test_crash import Service

ZHANG = 1001  # chat ids of two users
LI = 1002
ZHANG_EMAIL = "zhang.san@example.com"
LI_EMAIL = "li.si@example.com"


@dataclass
class Chat:
    desk: Desk
    api: FakeBotApi

    async def replies(self, user: int, count: int) -> list[dict[str, Any]]:
        """Wait until the bot has sent `count` messages to the user; all of them."""
        return await asyncio.to_thread(self.api.wait_sent, user, count)

    async def say(self, user: int, text: str, expect: int, language: str = "zh") -> str:
        """The user writes; returns the text of the bot's `expect`-th message to them."""
        self.api.text(user, text, language)
        return str((await self.replies(user, expect))[expect - 1]["text"])

    async def tap_first_button(self, user: int, nth: int) -> None:
        """The user taps the first button under the bot's `nth` message to them."""
        asked = (await self.replies(user, nth))[nth - 1]
        self.api.tap(user, asked["reply_markup"]["inline_keyboard"][0][0]["callback_data"], asked)

    async def tickets(self) -> list[Ticket]:
        async with self.desk.db.reading() as session:
            return list((await session.exec(select(Ticket).order_by(col(Ticket.id)))).all())

    async def conversation(self, user: int) -> ChatConversation:
        async with self.desk.db.reading() as session:
            found = await session.exec(
                select(ChatConversation).where(ChatConversation.chat_id == str(user))
            )
            return found.one()

    async def code_mailed_to(self, address: str) -> tuple[str, str]:
        """(code, the mail's text) of the newest verification code sent to `address`."""
        async with self.desk.db.reading() as session:
            entry = (
                await session.exec(
                    select(OutboxEntry)
                    .where(OutboxEntry.kind == "verification_code")
                    .where(OutboxEntry.recipient == address)
                    .order_by(col(OutboxEntry.id).desc())
                )
            ).first()
            assert entry is not None, f"no code was mailed to {address}"
            row = await session.get_one(Message, entry.message_id)
        mail = email.message_from_bytes(row.raw or b"", policy=email.policy.default)
        body = mail.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        found = re.search(r"(?:验证码是：|code is: )(\d{6})", text)
        assert found is not None, text
        return found.group(1), text


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def point_at(settings: Settings, api: FakeBotApi) -> None:
    assert api.server is not None
    url = f"http://127.0.0.1:{api.server.server_address[1]}"
    settings.telegram.base_url = f"{url}/bot"
    settings.telegram.base_file_url = f"{url}/file/bot"
    settings.telegram.poll_timeout_seconds = 1


async def add_accounts(desk: Desk) -> None:
    async with desk.db.transaction() as session:
        session.add(Account(id="acct-zhang", email=ZHANG_EMAIL, username="zhangsan"))
        session.add(Account(id="acct-li", email=LI_EMAIL, username="lisi"))


@pytest.fixture
async def chat(
    settings: Settings, clock: FrozenClock, model: RightsClassifier, api: FakeBotApi
) -> AsyncIterator[Chat]:
    point_at(settings, api)
    settings.telegram.privacy_policy_url = "https://example.com/privacy"
    desk = Desk.build(settings, clock, classifier=model)
    await add_accounts(desk)
    door = telegram_door(desk, TOKEN)
    stop = asyncio.Event()
    running = asyncio.create_task(serve_chat(desk, door, stop))
    try:
        yield Chat(desk, api)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
        await door.close()
        await desk.close()


async def test_an_access_request_in_chinese_is_confirmed_verified_and_ticketed(chat: Chat) -> None:
    # Typed one after the other: they usually arrive in one batch, stored before either is
    # answered.
    chat.api.text(ZHANG, "/start")
    question = await chat.say(ZHANG, "我想查看你们保存的我的全部个人信息", 2)
    greeting = (await chat.replies(ZHANG, 1))[0]["text"]
    assert "您好" in greeting
    assert "Hello" in greeting
    assert "https://example.com/privacy" in greeting
    assert "查阅" in question
    asked = (await chat.replies(ZHANG, 2))[1]
    buttons = [b for row in asked["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["是的", "都不是，其他事项"]
    assert await chat.tickets() == []  # nothing is opened before the user confirms

    chat.api.tap(ZHANG, buttons[0]["callback_data"], asked)
    opened = (await chat.replies(ZHANG, 3))[2]["text"]
    assert "PRIV-2026-000001" in opened
    assert "2026-03-" in opened
    assert "注册邮箱或用户名" in opened
    [edit] = chat.api.called("editMessageText")
    assert edit["text"].endswith("✓ 是的")
    assert "reply_markup" not in edit
    assert chat.api.called("answerCallbackQuery")

    sent = await chat.say(ZHANG, "我的注册邮箱是 zhang.san@example.com", 4)
    assert "验证码" in sent
    code, mail_text = await chat.code_mailed_to(ZHANG_EMAIL)
    assert "客服对话中输入" in mail_text  # the mail says where the code goes: the chat

    verified = await chat.say(ZHANG, code, 5)
    assert "已确认您的身份" in verified
    assert "PRIV-2026-000001" in verified
    status = await chat.say(ZHANG, "/status", 6)
    assert "PRIV-2026-000001：处理中" in status

    [ticket] = await chat.tickets()
    assert (ticket.status, ticket.verification, ticket.channel) == ("open", "verified", "telegram")
    assert [t.value for t in ticket.types] == ["access"]
    assert (await chat.conversation(ZHANG)).account_id == "acct-zhang"
    async with chat.desk.db.reading() as session:
        on_ticket = (
            await session.exec(
                select(Message.direction, func.count())
                .where(Message.ticket_id == ticket.id)
                .where(Message.channel == "telegram")
                .group_by(col(Message.direction))
            )
        ).all()
        kept = (
            await session.exec(
                select(Message.text)
                .where(Message.ticket_id == ticket.id)
                .where(Message.direction == "out")
            )
        ).all()
    assert any(text and text.startswith("我理解您想要") for text in kept)  # the question
    assert not any(text and "您好！" in text for text in kept)  # the greeting was before it
    # Both directions are on the ticket: the request, the tap, the email, the code; and the
    # bot's question, its edit, "opened", "code sent" and "verified".
    assert dict(on_ticket)["in"] >= 4
    assert dict(on_ticket)["out"] >= 3

    # The link is remembered: a second request from this chat needs no new code.
    await chat.say(ZHANG, "/new", 7)
    await chat.say(ZHANG, "请注销我的账号", 8)
    await chat.tap_first_button(ZHANG, 8)
    opened = (await chat.replies(ZHANG, 9))[8]["text"]
    assert "PRIV-2026-000002" in opened
    assert "无需再次验证" in opened
    second = (await chat.tickets())[1]
    assert (second.status, second.verification) == ("open", "verified")
    assert second.completion_due is not None  # account deletion: the 30-day promise


async def test_an_english_erasure_request_verified_by_username(chat: Chat) -> None:
    question = await chat.say(LI, "Please delete all my personal data", 1, language="en")
    assert "deletion of your personal information" in question
    await chat.tap_first_button(LI, 1)
    opened = (await chat.replies(LI, 2))[1]["text"]
    assert "PRIV-2026-000001 is open" in opened
    assert "registered email or username" in opened
    assert "will be done by" in opened  # erasure: completion within 30 days

    assert "6-digit code" in await chat.say(LI, "my username is lisi", 3, language="en")
    code, mail_text = await chat.code_mailed_to(LI_EMAIL)
    assert "in-app support chat" in mail_text
    assert "confirmed your identity" in await chat.say(LI, f"the code is {code}", 4, "en")
    [ticket] = await chat.tickets()
    assert ticket.verification == "verified"


async def test_five_wrong_codes_lock_verification(chat: Chat) -> None:
    asked_text = await chat.say(ZHANG, "我想查看你们保存的我的全部个人信息", 1)
    assert asked_text
    await chat.tap_first_button(ZHANG, 1)
    await chat.replies(ZHANG, 2)
    await chat.say(ZHANG, "zhangsan", 3)
    code, _ = await chat.code_mailed_to(ZHANG_EMAIL)
    wrong = "000000" if code != "000000" else "111111"
    answers = [await chat.say(ZHANG, wrong, 4 + attempt) for attempt in range(5)]
    assert answers[0] == "验证码不正确，还可以再试 4 次。"
    assert answers[3] == "验证码不正确，还可以再试 1 次。"
    assert "错误次数过多" in answers[4]

    # The right code, too late: it joins the ticket and verifies nothing.
    assert "已将您的消息加入请求" in await chat.say(ZHANG, code, 9)
    [ticket] = await chat.tickets()
    assert (ticket.status, ticket.verification) == ("awaiting_verification", "code")
    assert ticket.needs_review
    async with chat.desk.db.reading() as session:
        challenge = (await session.exec(select(VerificationChallenge))).one()
    assert (challenge.status, challenge.attempts) == ("locked", 5)


async def test_an_unknown_account_gets_the_same_answers_and_the_same_lock(chat: Chat) -> None:
    await chat.say(LI, "Please delete all my personal data", 1, language="en")
    await chat.tap_first_button(LI, 1)
    await chat.replies(LI, 2)
    known = "If an account matches, we have sent a 6-digit code"
    assert known in await chat.say(LI, "nobody@example.com", 3, "en")
    answers = [await chat.say(LI, "123456", 4 + attempt, "en") for attempt in range(5)]
    assert answers[0] == "That code is not right. 4 tries left."
    assert "Too many wrong codes" in answers[4]
    [ticket] = await chat.tickets()
    assert (ticket.verification, ticket.needs_review) == ("no_account", True)


async def test_nobody_can_cancel_someone_elses_ticket(chat: Chat) -> None:
    await chat.say(ZHANG, "请注销我的账号", 1)
    await chat.tap_first_button(ZHANG, 1)
    await chat.replies(ZHANG, 2)

    refused = await chat.say(LI, "/cancel PRIV-2026-000001", 1, language="en")
    missing = await chat.say(LI, "/cancel PRIV-2026-000999", 2, language="en")
    # The same answer for someone else's ticket and for no ticket at all.
    assert refused == missing.replace("000999", "000001")
    [ticket] = await chat.tickets()
    assert ticket.status == TicketStatus.AWAITING_VERIFICATION

    cancelled = await chat.say(ZHANG, "/cancel PRIV-2026-000001", 3)
    assert "已被撤回" in cancelled or "已撤回" in cancelled or "取消" in cancelled
    [ticket] = await chat.tickets()
    assert ticket.status == TicketStatus.CANCELLED


def _told_expired(chat: Chat) -> bool:
    return any("expired" in (a.get("text") or "") for a in chat.api.called("answerCallbackQuery"))


async def test_a_product_question_is_pointed_to_support_and_opens_no_ticket(chat: Chat) -> None:
    chat.desk.settings.telegram.support_hint = "App > Help"
    answer = await chat.say(LI, "How do I change my subscription plan?", 1, language="en")
    assert "customer support (App > Help)" in answer
    assert await chat.tickets() == []
    asked = (await chat.replies(LI, 1))[0]
    [[button]] = asked["reply_markup"]["inline_keyboard"]
    assert button["text"] == "It is about my personal information"

    chat.api.tap(LI, button["callback_data"], asked)
    triage = (await chat.replies(LI, 2))[1]["text"]
    assert "A member of our team will read your message" in triage
    [ticket] = await chat.tickets()
    assert ticket.needs_review
    assert [t.value for t in ticket.types] == ["inquiry"]

    # A stale button (the question was answered) does nothing but say so.
    chat.api.tap(LI, button["callback_data"], asked)
    async with asyncio.timeout(20):  # answered when the door has read the tap (a busy host)
        while not _told_expired(chat):  # noqa: ASYNC110 (the fake Bot API records; no event)
            await asyncio.sleep(0.05)
    assert len(await chat.tickets()) == 1


async def test_a_guardian_sends_documents_within_the_limits(chat: Chat) -> None:
    chat.desk.settings.telegram.dpo_chat_id = "9999"
    chat.api.document(ZHANG, b"%PDF-1.4 early", mime_type="application/pdf", name="birth.pdf")
    assert "只有监护人或近亲属" in (await chat.replies(ZHANG, 1))[0]["text"]

    question = await chat.say(ZHANG, "我是孩子的家长，孩子今年10岁，请删除他的账号和所有信息", 2)
    assert "监护人" in question
    await chat.tap_first_button(ZHANG, 2)
    opened = (await chat.replies(ZHANG, 3))[2]["text"]
    assert "照片或 PDF" in opened
    assert "10 MB" in opened
    urgent = await asyncio.to_thread(chat.api.wait_sent, 9999, 1)
    assert "urgent" in urgent[0]["text"]

    chat.api.document(ZHANG, b"GIF89a", mime_type="image/gif", name="x.gif")
    assert "只接受照片或 PDF" in (await chat.replies(ZHANG, 4))[3]["text"]
    chat.api.document(
        ZHANG, b"%PDF-1.4", mime_type="application/pdf", name="big.pdf", size=30 * 1024 * 1024
    )
    assert "不能超过 10 MB" in (await chat.replies(ZHANG, 5))[4]["text"]
    pdf = b"%PDF-1.4\n" + os.urandom(2048)
    chat.api.document(ZHANG, pdf, mime_type="application/pdf", name="guardianship.pdf")
    assert "已收到文件" in (await chat.replies(ZHANG, 6))[5]["text"]

    [ticket] = await chat.tickets()
    assert ticket.verification == "manual"
    assert ticket.needs_review
    async with chat.desk.db.reading() as session:
        [stored] = (await session.exec(select(StoredAttachment))).all()
        told = (
            await session.exec(
                select(OutboxEntry.kind, OutboxEntry.channel).where(
                    OutboxEntry.ticket_id == ticket.id
                )
            )
        ).all()
    assert (stored.filename, stored.content, stored.content_type) == (
        "guardianship.pdf",
        pdf,
        "application/pdf",
    )
    assert ("documents_received", "email") in told
    assert ("documents_received", "telegram") in told
    assert ("urgent_minor", "email") in told


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"sticker": {"file_id": "s", "file_unique_id": "s", "width": 1, "height": 1,
                      "is_animated": False, "is_video": False, "type": "regular"}}, "只能阅读文字"),
        ({"voice": {"file_id": "v", "file_unique_id": "v", "duration": 3}}, "只能阅读文字"),
        ({"location": {"latitude": 39.9, "longitude": 116.4}}, "只能阅读文字"),
        ({"text": "/frobnicate", "entities": [{"type": "bot_command", "offset": 0,
                                               "length": 11}]}, "/status"),
    ],
)  # fmt: skip
async def test_what_the_bot_cannot_read_gets_a_polite_answer(
    chat: Chat, update: dict[str, Any], expected: str
) -> None:
    chat.api.message(ZHANG, **update)
    assert expected in (await chat.replies(ZHANG, 1))[0]["text"]
    async with chat.desk.db.reading() as session:
        statuses = (await session.exec(select(Message.parse_status))).all()
    assert "stored" not in statuses
    assert "failed" not in statuses


async def test_edits_and_group_chats_are_answered_not_acted_on(chat: Chat) -> None:
    chat.api.edit(ZHANG, "请删除我的全部信息")
    assert "已修改的消息不会被重新阅读" in (await chat.replies(ZHANG, 1))[0]["text"]
    chat.api.message(LI, chat_type="group", text="delete my data")
    assert "私聊" in (await chat.replies(-LI, 1))[0]["text"]
    assert await chat.tickets() == []


async def test_a_flood_is_stored_and_answered_once(chat: Chat) -> None:
    chat.desk.settings.telegram.messages_per_minute = 3
    for n in range(8):
        chat.api.text(LI, f"hello {n}", "en")
    await chat.replies(LI, 4)
    await asyncio.sleep(0.5)
    texts = [m["text"] for m in chat.api.sent(LI)]
    assert len(texts) == 4
    assert texts[-1].startswith("That is a lot of messages")
    async with chat.desk.db.reading() as session:
        kept = (
            await session.exec(
                select(Message.parse_status, func.count())
                .where(Message.direction == "in")
                .group_by(col(Message.parse_status))
            )
        ).all()
    assert dict(kept) == {"parsed": 3, "ignored": 5}


async def test_an_update_given_twice_is_handled_once(chat: Chat) -> None:
    update_id = chat.api.text(ZHANG, "/status")
    await chat.replies(ZHANG, 1)
    chat.api.replay(update_id)
    chat.api.text(ZHANG, "/unlink")
    replies = await chat.replies(ZHANG, 2)
    await asyncio.sleep(0.3)
    assert [r["text"] for r in chat.api.sent(ZHANG)] == [r["text"] for r in replies]
    assert "没有关联" in replies[1]["text"]


async def test_an_update_stored_before_a_crash_is_handled_at_start(
    settings: Settings, clock: FrozenClock, model: RightsClassifier, api: FakeBotApi
) -> None:
    point_at(settings, api)
    desk = Desk.build(settings, clock, classifier=model)
    try:
        door = telegram_door(desk, TOKEN)
        assert await door.start(asyncio.Event())
        # Stored (and so confirmed to Telegram), then the process died before handling it.
        raw = (
            b'{"update_id": 1, "message": {"message_id": 1, "date": 1, "text": "/status",'
            b' "entities": [{"type": "bot_command", "offset": 0, "length": 7}],'
            b' "chat": {"id": 1001, "type": "private"},'
            b' "from": {"id": 1001, "is_bot": false, "first_name": "Z"}}}'
        )
        await door.store(1, raw)
        await door.close()
        door = telegram_door(desk, TOKEN)
        stop = asyncio.Event()
        running = asyncio.create_task(serve_chat(desk, door, stop))
        assert "您还没有任何请求" in (await asyncio.to_thread(api.wait_sent, ZHANG, 1))[0]["text"]
        stop.set()
        await asyncio.wait_for(running, timeout=15)
        await door.close()
    finally:
        await desk.close()


async def test_webhook_updates_need_the_secret(
    settings: Settings, clock: FrozenClock, model: RightsClassifier, api: FakeBotApi
) -> None:
    point_at(settings, api)
    settings.telegram.mode = "webhook"
    settings.telegram.webhook_url = "https://bot.example.com/telegram"
    settings.telegram.webhook_port = 0
    settings.telegram.webhook_secret = SecretStr("s3cret-token")
    desk = Desk.build(settings, clock, classifier=model)
    door = telegram_door(desk, TOKEN)
    stop = asyncio.Event()
    running = asyncio.create_task(serve_chat(desk, door, stop))
    try:
        # The door's state, set by another task as it starts: polled, there is no event.
        while door.webhook_port is None or not api.called("setWebhook"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        [registered] = api.called("setWebhook")
        assert registered["secret_token"] == "s3cret-token"
        assert registered["url"] == "https://bot.example.com/telegram"
        update = {
            "update_id": 77,
            "message": {
                "message_id": 5,
                "date": 1,
                "text": "/status",
                "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
                "chat": {"id": ZHANG, "type": "private"},
                "from": {"id": ZHANG, "is_bot": False, "first_name": "Z", "language_code": "en"},
            },
        }
        url = f"http://127.0.0.1:{door.webhook_port}/telegram"
        async with httpx.AsyncClient() as client:
            wrong = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-tokeN"}
            )
            missing = await client.post(url, json=update)
            garbage = await client.post(
                url, content=b"{", headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
            )
            right = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
            )
        assert (wrong.status_code, missing.status_code, garbage.status_code) == (403, 403, 400)
        assert right.status_code == 200
        reply = await asyncio.to_thread(api.wait_sent, ZHANG, 1)
        assert "You have no requests yet" in reply[0]["text"]
        async with desk.db.reading() as session:
            stored = (
                await session.exec(select(Message.dedupe_key).where(Message.direction == "in"))
            ).all()
        assert stored == [f"telegram:{BOT_ID}:77"]
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
        await door.close()
        await desk.close()


def test_the_service_killed_mid_verification_resumes_the_conversation(
    api: FakeBotApi, settings: Settings, tmp_path: Path
) -> None:
    """`rightsdesk run` with a token: kill -9 while the user is being verified; after the
    restart the code they type still verifies them."""
    if not model_exists():
        pytest.skip("no trained model: `make test` trains it first")
    assert api.server is not None
    url = f"http://127.0.0.1:{api.server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(
        RIGHTSDESK_DATABASE__URL=settings.database.url,
        RIGHTSDESK_DESK__DATA_DIR=str(tmp_path / "var"),
        RIGHTSDESK_SMTP__ENABLED="false",
        RIGHTSDESK_SCHEDULER__ENABLED="false",
        RIGHTSDESK_TELEGRAM__TOKEN=TOKEN,
        RIGHTSDESK_TELEGRAM__BASE_URL=f"{url}/bot",
        RIGHTSDESK_TELEGRAM__BASE_FILE_URL=f"{url}/file/bot",
        RIGHTSDESK_TELEGRAM__POLL_TIMEOUT_SECONDS="1",
    )
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(f"account_id,email,username\nacct-zhang,{ZHANG_EMAIL},zhangsan\n")
    subprocess.run(
        [sys.executable, "-m", "rightsdesk", "accounts", "import", str(accounts)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    service = Service(tmp_path, env)
    service.mark()
    service.start()
    try:
        api.text(ZHANG, "我想查看你们保存的我的全部个人信息")
        asked = api.wait_sent(ZHANG, 1, timeout=30)[0]
        api.tap(ZHANG, asked["reply_markup"]["inline_keyboard"][0][0]["callback_data"], asked)
        api.wait_sent(ZHANG, 2)
        api.text(ZHANG, ZHANG_EMAIL)
        api.wait_sent(ZHANG, 3)
        # Killed mid-verification, not mid-send: a message whose send was cut off is sent
        # again at once after the restart (the claims of a dead sender are released).
        asyncio.run(_chat_sent(Desk.build(settings), 3))
        service.kill9()

        desk = Desk.build(settings)
        code, _ = asyncio.run(_code_then_close(desk))
        service.mark()
        service.start()
        api.text(ZHANG, code)
        verified = api.wait_sent(ZHANG, 4, timeout=30)[3]["text"]
        assert "已确认您的身份" in verified
        assert service.stop() == 0
        log = (tmp_path / "service.log").read_text()
        assert "telegram=polling" in log
        assert TOKEN not in log  # request URLs carry it: they are not logged
        assert ZHANG_EMAIL not in log
        assert code not in log
    finally:
        if service.process is not None and service.process.poll() is None:
            service.kill9()


async def _chat_sent(desk: Desk, count: int) -> None:
    """Until `count` chat messages are marked sent."""
    try:
        for _ in range(300):
            async with desk.db.reading() as session:
                sent = (
                    await session.exec(
                        select(func.count(col(OutboxEntry.id)))
                        .where(OutboxEntry.channel == Channel.TELEGRAM)
                        .where(OutboxEntry.status == "sent")
                    )
                ).one()
            if sent >= count:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{sent} of {count} chat messages marked sent")
    finally:
        await desk.close()


async def _code_then_close(desk: Desk) -> tuple[str, str]:
    try:
        return await Chat(desk, FakeBotApi()).code_mailed_to(ZHANG_EMAIL)
    finally:
        await desk.close()


async def test_a_triage_ticket_relabelled_to_erasure_asks_the_chat_for_its_account(
    chat: Chat,
) -> None:
    await chat.say(LI, "How do I change my subscription plan?", 1, language="en")
    await chat.tap_first_button(LI, 1)
    await chat.replies(LI, 2)
    [ticket] = await chat.tickets()
    assert ticket.status == TicketStatus.OPEN  # a question: nothing to verify

    await chat.desk.tickets.relabel(ticket.public_id, "cli:dpo", [RequestType.ERASURE])
    assert await chat.desk.verifier.reconsider(ticket.public_id, "cli:dpo") == "identity"
    asked_again = (await chat.replies(LI, 3))[2]["text"]
    assert "registered email or username" in asked_again
    assert "6-digit code" in await chat.say(LI, LI_EMAIL, 4, "en")
    code, _ = await chat.code_mailed_to(LI_EMAIL)
    assert "confirmed your identity" in await chat.say(LI, code, 5, "en")
    [ticket] = await chat.tickets()
    assert (ticket.status, ticket.verification) == (TicketStatus.OPEN, "verified")
    async with chat.desk.db.reading() as session:
        question = (await session.exec(select(Message).where(Message.direction == "out"))).first()
    assert question is not None
    assert question.ticket_id == ticket.id  # the bot's question is on the ticket too


async def test_a_request_about_a_child_by_mail_reaches_the_dpo_chat_at_once(chat: Chat) -> None:
    chat.desk.settings.telegram.dpo_chat_id = "9999"
    await deliver(chat.desk, mail("我是孩子的家长，孩子今年10岁，请删除他的账号和所有信息"))
    [alert] = await asyncio.to_thread(chat.api.wait_sent, 9999, 1)
    assert "urgent: a request about a child's data" in alert["text"]
    [ticket] = await chat.tickets()
    assert "minor" in [t.value for t in ticket.types]


async def test_a_message_the_classifier_is_unsure_of_opens_a_triage_ticket(chat: Chat) -> None:
    # (An accusation such as "你们是不是在卖我的数据？" is now a sure complaint: issue #14.)
    said = await chat.say(ZHANG, "关于我的那些资料，你们到底想怎么样", 1)
    assert "我们的工作人员会阅读您的消息" in said
    assert "PRIV-2026-000001" in said
    [ticket] = await chat.tickets()
    assert ticket.needs_review
    assert "reply_markup" not in (await chat.replies(ZHANG, 1))[0]  # nothing to confirm


async def test_a_new_ask_in_the_chat_after_a_request_is_suggested_never_dropped(
    chat: Chat,
) -> None:
    await chat.say(LI, "Please delete all my personal data", 1, language="en")
    await chat.tap_first_button(LI, 1)
    await chat.replies(LI, 2)
    await chat.say(LI, "my username is lisi", 3, language="en")
    code, _ = await chat.code_mailed_to(LI_EMAIL)
    await chat.say(LI, f"the code is {code}", 4, "en")
    await chat.say(LI, "thanks!", 5, "en")
    [ticket] = await chat.tickets()
    assert ticket.suggested_types == []
    assert ticket.unread is True  # the requester wrote since a person acted

    added = await chat.say(LI, "Also I want a copy of all the data you hold about me.", 6, "en")
    assert ticket.public_id in added  # joined the open ticket, not a new one
    [ticket] = await chat.tickets()
    assert set(ticket.suggested_types) & {"access", "copy"}
    assert [t.value for t in ticket.types] == ["erasure"]  # suggested, not added
    assert ticket.needs_review is True
