"""Answering requesters, end to end on both databases: replies with files by mail (a real SMTP
relay on loopback) and by chat (the loopback Bot API), internal notes that are never sent,
resolve/deny with the requester's text apart from the team's, and the language of each ticket."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select
from telegram import Bot
from typer.testing import CliRunner

from bot.transport import TelegramTransport
from intake.smtp import SmtpReceiver
from rightsdesk.answers import Attachment
from rightsdesk.cli import app
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import (
    Channel,
    OutboxEntry,
    Requester,
    RequestType,
    StoredAttachment,
)
from rightsdesk.outbound import OutboundSender
from rightsdesk.pipeline import Classification
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket, TicketError
from rightsdesk.views import ticket_detail
from tests.conftest import mail
from tests.fake_bot_api import TOKEN, FakeBotApi
from tests.test_bot import Chat, api, chat  # noqa: F401  (fixtures: the bot against the fake API)
from tests.test_verification_flow import OWNER, PRIVACY, Relay, World, text_of

# Two files whose bytes must arrive unchanged: every byte value, and a PDF-looking one with a
# Chinese name (RFC 2231 on the way out).
CSV_NAME = "个人信息副本 2026.csv"
CSV_BYTES = "账号,邮箱\nu1,zhang.san@example.com\n".encode() + bytes(range(256))
PDF_NAME = "report.pdf"
PDF_BYTES = b"%PDF-1.4\n" + bytes(reversed(range(256))) * 40 + b"\n%%EOF\n"
FILES = [Attachment(CSV_NAME, CSV_BYTES), Attachment(PDF_NAME, PDF_BYTES)]
CHAT_USER = 1001


@dataclass
class ByScript:
    """Stands in for the classifier: fixed types, and Chinese or English by the text (the
    model's own language detection says zh or en the same way)."""

    types: list[RequestType]
    chinese_types: list[RequestType] | None = None  # other types for a Chinese text

    def classify(self, subject: str, text: str) -> Classification:
        chinese = any("\u4e00" <= ch <= "\u9fff" for ch in text)
        types = (self.chinese_types or self.types) if chinese else self.types
        return Classification(types=types, needs_review=False, language="zh" if chinese else "en")


@pytest.fixture
async def world(settings: Settings, clock: FrozenClock) -> AsyncIterator[World]:
    relay = Relay()
    await relay.start()
    settings.outbound.relay_host = "127.0.0.1"
    settings.outbound.relay_port = relay.port
    settings.outbound.relay_starttls = False
    settings.smtp.port = 0
    desk = Desk.build(settings, clock, classifier=ByScript([RequestType.INQUIRY]))
    receiver = SmtpReceiver(settings.smtp, settings.mail, desk.inbox, [PRIVACY])
    await receiver.start()
    try:
        yield World(desk, relay, receiver, clock)
    finally:
        await receiver.stop()
        await relay.stop()
        await desk.close()


def received(world: World, kind: str) -> list[email.message.EmailMessage]:
    parsed = [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _, _, raw in world.relay.received
    ]
    return [m for m in parsed if m["X-Rightsdesk-Kind"] == kind]


async def only(desk: Desk) -> str:
    [ticket] = await desk.tickets.find()
    return ticket.public_id


async def outbox_count(desk: Desk) -> int:
    async with desk.db.reading() as session:
        return (await session.exec(select(func.count()).select_from(OutboxEntry))).one()


# ---- replies by mail -------------------------------------------------------------------------


async def test_mail_without_a_message_id_is_answered_without_quoting_our_derived_id(
    world: World,
) -> None:
    raw = mail("请把我的个人信息副本发给我。").replace(b"Message-ID: <req-1@example.com>\r\n", b"")
    assert b"Message-ID" not in raw
    await world.send(raw)
    public_id = await only(world.desk)
    await world.desk.answers.reply(public_id, actor="cli:dpo", text="您好。")
    await world.desk.sender.send_due()
    [ack] = received(world, "acknowledgement")
    [reply] = received(world, "reply")
    # The id we derived for it (sha256-…@rightsdesk.invalid) is no one's: never quoted back.
    assert ack["In-Reply-To"] is None
    assert ack["References"] is None
    assert reply["In-Reply-To"] == ack["Message-ID"]
    assert "rightsdesk.invalid" not in str(reply["References"])


async def test_a_reply_with_two_files_arrives_threaded_and_byte_exact(world: World) -> None:
    await world.send(mail("请把我的个人信息副本发给我。", message_id="req-1@example.com"))
    public_id = await only(world.desk)
    [ack] = received(world, "acknowledgement")

    sent = await world.desk.answers.reply(
        public_id, actor="cli:dpo", text="您好，附件是您的数据。\n\n共两份文件。", attachments=FILES
    )
    await world.desk.sender.send_due()

    [reply] = received(world, "reply")
    # Threaded: our signed Message-ID, an answer to the requester's mail, the ticket's tag.
    assert world.desk.signer.ticket_of(reply["Message-ID"]) == public_id
    assert reply["In-Reply-To"] == "<req-1@example.com>"
    assert "<req-1@example.com>" in reply["References"]
    assert ack["Message-ID"] in reply["References"]
    assert reply["Subject"].startswith(f"[{public_id}] ")
    assert reply["Auto-Submitted"] is None  # a person wrote it
    assert reply["To"].addresses[0].addr_spec == OWNER
    body = reply.get_body(("plain",))
    assert body is not None
    assert "附件是您的数据。" in body.get_content()
    html = reply.get_body(("html",))
    assert html is not None
    assert "共两份文件。" in html.get_content()
    files = {part.get_filename(): part for part in reply.iter_attachments()}
    assert set(files) == {CSV_NAME, PDF_NAME}
    assert files[CSV_NAME].get_content_type() == "text/csv"
    assert files[PDF_NAME].get_content_type() == "application/pdf"
    assert files[CSV_NAME].get_payload(decode=True) == CSV_BYTES
    assert files[PDF_NAME].get_payload(decode=True) == PDF_BYTES
    raw = world.relay.received[-1][2]
    # RFC 2231 for the Chinese name (continued over lines: filename*0*=utf-8''..., filename*1*=)
    assert re.search(rb"filename\*(0\*)?=utf-8''%E4%B8%AA", raw)

    # Kept on the ticket, listed in its view, and an audit event with the files' hashes.
    detail = ticket_detail(
        await world.desk.tickets.detail(public_id), world.desk.tickets.today(), world.desk.policy.tz
    )
    listed = [a for m in detail["messages"] for a in m["attachments"]]
    assert [(a["filename"], a["size"]) for a in listed] == [
        (CSV_NAME, len(CSV_BYTES)),
        (PDF_NAME, len(PDF_BYTES)),
    ]
    [event] = [e for e in detail["events"] if e["action"] == "replied"]
    assert event["actor"] == "cli:dpo"
    assert [a["size"] for a in event["after"]["attachments"]] == [len(CSV_BYTES), len(PDF_BYTES)]
    assert event["after"]["messages"] == sent.message_ids
    async with world.desk.db.reading() as session:
        stored = (
            await session.exec(select(StoredAttachment).order_by(col(StoredAttachment.id)))
        ).all()
    assert [s.content for s in stored] == [CSV_BYTES, PDF_BYTES]


async def test_a_file_named_like_a_path_goes_out_under_its_last_part_only(world: World) -> None:
    await world.send(mail("请把我的个人信息副本发给我。"))
    public_id = await only(world.desk)
    tricks = [
        Attachment("../../../../tmp/rd_up_pwn.txt", b"a"),
        Attachment("..\\..\\evil.bat", b"b"),
        Attachment("\u202etxt.exe", b"c"),
    ]
    await world.desk.answers.reply(public_id, actor="cli:dpo", text="files", attachments=tricks)
    await world.desk.sender.send_due()
    [reply] = received(world, "reply")
    names = [part.get_filename() for part in reply.iter_attachments()]
    assert names == ["rd_up_pwn.txt", "evil.bat", "_txt.exe"]


async def test_a_reply_over_the_size_cap_is_refused_and_nothing_is_queued(world: World) -> None:
    await world.send(mail("请把我的个人信息副本发给我。"))
    public_id = await only(world.desk)
    before = await outbox_count(world.desk)
    world.desk.settings.outbound.max_attachment_bytes = len(CSV_BYTES) + len(PDF_BYTES) - 1
    with pytest.raises(TicketError, match="max_attachment_bytes"):
        await world.desk.answers.reply(public_id, actor="cli:dpo", text="x", attachments=FILES)
    assert await outbox_count(world.desk) == before


async def test_a_canned_reply_fills_the_tickets_variables(world: World) -> None:
    await world.send(mail("I would like to know what data you hold about me."))
    public_id = await only(world.desk)
    with pytest.raises(TicketError, match="needs your text"):
        await world.desk.answers.reply(public_id, actor="cli:dpo", template="deletion_done")
    with pytest.raises(TicketError, match="no canned reply 'gossip'"):
        await world.desk.answers.reply(public_id, actor="cli:dpo", template="gossip")
    await world.desk.answers.reply(
        public_id, actor="cli:dpo", template="deletion_done", text="- your order history"
    )
    await world.desk.sender.send_due()
    [reply] = received(world, "reply")
    text = text_of(reply)
    assert f"About your request {public_id}: we have deleted" in text  # the ticket's language
    assert "- your order history" in text
    assert "Kind regards," in text


# ---- replies by chat -------------------------------------------------------------------------


@pytest.fixture
def bot_api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


async def chat_ticket(desk: Desk, language: str = "zh") -> str:
    ticket = await desk.tickets.open(
        NewTicket(
            channel=Channel.TELEGRAM,
            contact=Contact.telegram(CHAT_USER),
            types=[RequestType.ACCESS],
            received_at=desk.clock.now(),
            language=language,
            text="请把我的数据发给我",
        )
    )
    return ticket.public_id


async def send_chat(desk: Desk, bot_api: FakeBotApi) -> int:
    assert bot_api.server is not None
    url = f"http://127.0.0.1:{bot_api.server.server_address[1]}"
    async with Bot(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot") as bot:
        sender = OutboundSender(
            desk.db, desk.clock, desk.outbox, TelegramTransport(bot), Channel.TELEGRAM
        )
        return await sender.send_due()


async def test_a_reply_with_two_files_arrives_in_the_chat_byte_exact(
    desk: Desk, bot_api: FakeBotApi
) -> None:
    public_id = await chat_ticket(desk)
    await desk.answers.reply(public_id, actor="cli:dpo", text="附件是您的数据。", attachments=FILES)
    assert await send_chat(desk, bot_api) == 3
    [message] = bot_api.sent(CHAT_USER)
    assert "附件是您的数据。" in message["text"]
    assert "此对话" in message["text"]  # "tell us here in the chat", not "reply to this email"
    assert "个人信息保护团队" not in message["text"]  # no mail sign-off in a chat
    documents = bot_api.called("sendDocument")
    assert [d["chat_id"] for d in documents] == [str(CHAT_USER)] * 2
    assert [d["document"]["filename"] for d in documents] == [CSV_NAME, PDF_NAME]
    assert [d["document"]["content"] for d in documents] == [CSV_BYTES, PDF_BYTES]
    # In order: the text first, then the files as attached.
    methods = [c.method for c in bot_api.calls if c.method.startswith("send")]
    assert methods == ["sendMessage", "sendDocument", "sendDocument"]
    detail = await desk.tickets.detail(public_id)
    assert sorted(len(a) for a in detail.attachments.values()) == [1, 1]


# ---- internal notes --------------------------------------------------------------------------


async def test_a_note_is_never_sent(world: World, bot_api: FakeBotApi) -> None:
    await world.send(mail("请把我的个人信息副本发给我。"))
    by_mail = await only(world.desk)
    by_chat = await chat_ticket(world.desk)
    mails_before = len(world.relay.received)
    queued_before = await outbox_count(world.desk)

    await world.desk.answers.note(by_mail, actor="cli:dpo", text="已核对身份证复印件 / ID checked")
    await world.desk.answers.note(by_chat, actor="cli:dpo", text="call back on Monday")
    await world.desk.sender.send_due()
    await send_chat(world.desk, bot_api)

    assert await outbox_count(world.desk) == queued_before
    assert len(world.relay.received) == mails_before
    assert [c.method for c in bot_api.calls if c.method != "getMe"] == []
    for public_id, said in ((by_mail, "ID checked"), (by_chat, "call back on Monday")):
        detail = ticket_detail(
            await world.desk.tickets.detail(public_id),
            world.desk.tickets.today(),
            world.desk.policy.tz,
        )
        [note] = [m for m in detail["messages"] if m["internal"]]
        assert said in note["text"]
        assert note["sender"] == "cli:dpo"
        assert not any(m["internal"] for m in detail["messages"] if m is not note)
        assert [e["actor"] for e in detail["events"] if e["action"] == "noted"] == ["cli:dpo"]


# ---- resolve and deny ------------------------------------------------------------------------


async def test_resolve_and_deny_keep_the_note_apart_from_what_the_requester_reads(
    world: World,
) -> None:
    await world.send(mail("请把我的个人信息副本发给我。", message_id="a@example.com"))
    await world.send(
        mail(
            "请删除我的全部信息。",
            message_id="b@example.com",
            subject="second",
            sender="li.si@example.com",
        )
    )
    first, second = [t.public_id for t in await world.desk.tickets.find()]
    for public_id in (first, second):
        await world.desk.tickets.start(public_id, "cli:dpo")

    await world.desk.answers.resolve(
        first, actor="cli:dpo", reply="副本已于3月3日发送", note="exported by hand from the CRM"
    )
    await world.desk.answers.deny(
        second, actor="cli:dpo", reason="依法须保存三年", note="legal said no, ticket LEG-12"
    )
    await world.desk.sender.send_due()

    [resolved] = received(world, "resolved")
    [denied] = received(world, "denied")
    assert "副本已于3月3日发送" in text_of(resolved)
    assert "CRM" not in text_of(resolved)
    assert "依法须保存三年" in text_of(denied)
    assert "LEG-12" not in text_of(denied)
    for public_id, reply, note in (
        (first, "副本已于3月3日发送", "CRM"),
        (second, "依法须保存三年", "LEG-12"),
    ):
        view = ticket_detail(
            await world.desk.tickets.detail(public_id),
            world.desk.tickets.today(),
            world.desk.policy.tz,
        )
        assert reply in (view["resolution_reply"] or view["denial_reason"])
        [kept] = [m for m in view["messages"] if m["internal"]]
        assert note in kept["text"]


@pytest.fixture
def cli_config(database_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[desk]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[outbound]\noutbox_dir = "{tmp_path / "outbox"}"\n',
        encoding="utf-8",
    )
    return path


def run(config: Path, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), "--actor", "cli:dpo", *args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout) if "--json" in args and code == 0 else result


def test_the_cli_answers_notes_and_refuses_the_old_resolve(
    cli_config: Path, tmp_path: Path
) -> None:
    opened = run(
        cli_config,
        "tickets",
        "open",
        "--email",
        OWNER,
        "--type",
        "access",
        "--lang",
        "en",
        "--json",
    )
    tid = opened["id"]
    attachment = tmp_path / CSV_NAME
    attachment.write_bytes(CSV_BYTES)
    sent = run(
        cli_config,
        "tickets",
        "reply",
        tid,
        "--text",
        "Your data.",
        "--attach",
        str(attachment),
        "--json",
    )
    assert sent["lang"] == "en"
    assert sent["attachments"][0]["filename"] == CSV_NAME
    letter = tmp_path / "answer.txt"
    letter.write_text("第二封回复。\nA second reply.", encoding="utf-8")
    again = run(
        cli_config, "tickets", "reply", tid, "--file", str(letter), "--lang", "zh", "--json"
    )
    assert again["lang"] == "zh"
    both = run(cli_config, "tickets", "reply", tid, "--text", "x", "--file", str(letter), code=2)
    assert "not both" in both.stderr
    run(cli_config, "tickets", "note", tid, "--text", "checked by phone")
    shown = run(cli_config, "tickets", "show", tid, "--json")
    assert [m["internal"] for m in shown["messages"]] == [False, False, True]
    assert "第二封回复。" in shown["messages"][1]["text"]
    assert shown["messages"][0]["attachments"][0]["size"] == len(CSV_BYTES)
    table = run(cli_config, "tickets", "show", tid).stdout
    assert "INTERNAL NOTE" in table
    assert CSV_NAME in table
    kinds = [e["kind"] for e in run(cli_config, "outbox", "list", "--json")]
    assert kinds == ["reply", "reply"]  # the note queued nothing

    run(cli_config, "tickets", "verify", tid, "--note", "by phone")
    run(cli_config, "tickets", "start", tid)
    old = run(cli_config, "tickets", "resolve", tid, "--note", "copy sent", code=2)
    assert "--note is internal" in old.stderr
    assert "--reply" in old.stderr
    assert run(cli_config, "tickets", "show", tid, "--json")["status"] == "in_progress"
    # Who reads what, said in --help (rich wraps it in a box: read it as one line).
    boxed = run(cli_config, "tickets", "resolve", "--help").stdout
    helped = " ".join(re.sub(r"[│╭╮╰╯─]", " ", boxed).split())
    assert "What the REQUESTER reads" in helped
    assert "never sent to the requester" in helped
    assert "--reply goes to the requester; --note stays with the team" in helped
    # An access request is not resolved with nothing given: a package, or the reason why not.
    bare = run(cli_config, "tickets", "resolve", tid, "--reply", "sent on 3 March", code=1)
    assert "--without-package" in bare.stderr
    run(
        cli_config,
        *("tickets", "resolve", tid, "--reply", "sent on 3 March", "--note", "by hand"),
        *("--without-package", "the copy went by mail, as the requester asked"),
    )
    waived = [e for e in run(cli_config, "tickets", "show", tid, "--json")["events"]]
    assert [e["after"] for e in waived if e["action"] == "resolve_waived"] == [
        {"without_package": "the copy went by mail, as the requester asked"}
    ]
    assert (
        run(cli_config, "tickets", "show", tid, "--json")["resolution_reply"] == "sent on 3 March"
    )

    listed = run(cli_config, "tickets", "templates", "--json")
    names = {row["name"]: row["languages"] for row in listed}
    assert set(names) >= {"copy_attached", "more_information", "not_held", "deletion_done"}
    assert all(langs == ["en", "zh", "zh-Hant"] for langs in names.values())


def test_a_company_folder_overrides_a_canned_reply_and_adds_one(
    cli_config: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "ours" / "replies"
    folder.mkdir(parents=True)
    (folder / "not_held.en.j2").write_text(
        "{% block title %}Not ours{% endblock %}"
        "{% block body %}Not ours: {{ ticket_id }}{% endblock %}",
        encoding="utf-8",
    )
    (folder / "call_us.en.j2").write_text(
        "{% block title %}Call us{% endblock %}{% block body %}Call us{% endblock %}", "utf-8"
    )
    with cli_config.open("a", encoding="utf-8") as handle:
        handle.write(f'templates_dir = "{tmp_path / "ours"}"\n')
    listed = {r["name"]: r["titles"] for r in run(cli_config, "tickets", "templates", "--json")}
    assert listed["not_held"]["en"] == "Not ours"
    assert listed["not_held"]["zh"] == "我们并不持有这些信息"
    assert listed["call_us"] == {"en": "Call us"}


# ---- languages -------------------------------------------------------------------------------


async def test_a_traditional_chinese_request_is_answered_in_traditional_chinese(
    world: World,
) -> None:
    await world.send(mail("您好，我想申請註銷帳號，並刪除我的個人資料。", subject="申請註銷帳號"))
    public_id = await only(world.desk)
    assert (await world.desk.tickets.get(public_id)).language == "zh-Hant"
    [ack] = received(world, "acknowledgement")
    text = text_of(ack)
    assert "我們已收到您關於個人資料的請求" in text
    assert "个人" not in text
    assert "请" not in text
    await world.desk.tickets.start(public_id, "cli:dpo")
    await world.desk.answers.resolve(public_id, actor="cli:dpo", reply="帳號已註銷")
    await world.desk.sender.send_due()
    [resolved] = received(world, "resolved")
    assert "您的請求" in text_of(resolved)
    assert "個人資料保護團隊" in text_of(resolved)


async def test_a_traditional_chinese_chat_request_gets_traditional_chat_wording(chat: Chat) -> None:  # noqa: F811
    confirm = await chat.say(CHAT_USER, "我想申請註銷帳號", 1)
    assert "對嗎？請點選下面的按鈕" in confirm
    await chat.tap_first_button(CHAT_USER, 1)
    replies = await chat.replies(CHAT_USER, 2)
    opened = replies[-1]["text"]
    assert "已為您建立請求" in opened
    [ticket] = await chat.tickets()
    assert ticket.language == "zh-Hant"
    # What the requester chooses later moves the chat's open ticket too.
    assert await chat.say(CHAT_USER, "/lang en", 3) == "OK, I will answer in English."
    [ticket] = await chat.tickets()
    assert ticket.language == "en"


async def test_an_english_ticket_stays_english_after_a_chinese_one(world: World) -> None:
    # Two different asks: the same ask again would join the open ticket (duplicate joining).
    classifier = world.desk.classifier
    assert isinstance(classifier, ByScript)
    classifier.chinese_types = [RequestType.COMPLAINT]  # no code needed, like inquiry
    await world.send(
        mail("Please tell me what data you hold about me.", message_id="en@example.com")
    )
    await world.send(
        mail("请告诉我你们持有我的哪些信息。", message_id="zh@example.com", subject="again")
    )
    english, chinese = await world.desk.tickets.find()
    assert (english.language, chinese.language) == ("en", "zh")
    async with world.desk.db.reading() as session:
        requester = await session.get_one(Requester, english.requester_id)
    assert requester.id == chinese.requester_id
    assert requester.language == "zh"

    for ticket in (english, chinese):
        await world.desk.tickets.start(ticket.public_id, "cli:dpo")
        await world.desk.answers.resolve(ticket.public_id, actor="cli:dpo", reply="done / 完成")
    await world.desk.answers.reply(english.public_id, actor="cli:dpo", text="One more thing.")
    await world.desk.sender.send_due()
    by_ticket = {m["Subject"].split("]")[0][1:]: m for m in received(world, "resolved")}
    assert "Your request" in text_of(by_ticket[english.public_id])
    assert "您好" not in text_of(by_ticket[english.public_id])
    assert "您的请求" in text_of(by_ticket[chinese.public_id])
    [reply] = received(world, "reply")
    assert text_of(reply).startswith("Hello,")
    assert "Kind regards," in text_of(reply)


async def test_the_chat_answers_in_the_language_the_user_chooses(chat: Chat) -> None:  # noqa: F811
    chat.api.text(CHAT_USER, "/start", language="zh-hant")  # a client set to traditional Chinese
    [greeting] = await chat.replies(CHAT_USER, 1)
    assert greeting["text"].startswith("您好！我是")
    assert "個人資料保護助手" in greeting["text"]
    assert "Hello!" in greeting["text"]
    assert await chat.say(CHAT_USER, "/lang zh-Hant", 2) == "好的，之後我會用繁體中文回覆。"
    assert "/lang zh-Hant" in await chat.say(CHAT_USER, "/lang klingon", 3)
    assert await chat.say(CHAT_USER, "/lang en", 4) == "OK, I will answer in English."
    assert (await chat.conversation(CHAT_USER)).language == "en"


async def test_a_long_chat_reply_is_sent_whole_in_several_messages(
    desk: Desk, bot_api: FakeBotApi
) -> None:
    public_id = await chat_ticket(desk)
    paragraphs = [f"第{n}段：" + "数据" * 300 for n in range(12)]  # about 7,300 characters
    await desk.answers.reply(public_id, actor="cli:dpo", text="\n\n".join(paragraphs))
    await send_chat(desk, bot_api)
    sent = [m["text"] for m in bot_api.sent(CHAT_USER)]
    assert len(sent) == 2
    assert all(len(text) <= 4096 for text in sent)
    joined = "\n\n".join(sent)
    assert all(p in joined for p in paragraphs)  # nothing cut off, no paragraph split
