"""The SMTP door against what a hostile sender found (issue #12), one test per mail that broke it.

Each mail goes through a real SMTP socket into the desk, on SQLite and on PostgreSQL, and must
end as a ticket with its readable text (never stuck in `intake failed`). The parser-level
expectations (the safe default each case gets) are checked on the same mail.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator

import pytest
from sqlmodel import select

from intake.mail import MAX_MIME_DEPTH, message_id_of, parse_email
from intake.smtp import SmtpReceiver
from rightsdesk.models import Message, Ticket
from rightsdesk.pipeline import IntakeWorker
from rightsdesk.service import Desk

PRIVACY = "privacy@localhost"
HEAD = (
    b"From: Zhang San <zhang.san@example.com>\r\nTo: privacy@localhost\r\n"
    b"Subject: delete my data\r\nMessage-ID: <hostile-1@example.com>\r\n"
)


@pytest.fixture
async def receiver(desk: Desk) -> AsyncIterator[SmtpReceiver]:
    desk.settings.smtp.port = 0
    server = SmtpReceiver(desk.settings.smtp, desk.settings.mail, desk.inbox, [PRIVACY])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _send(port: int, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.com")
        assert client.docmd("MAIL", "FROM:<zhang.san@example.com>")[0] == 250
        assert client.docmd("RCPT", f"TO:<{PRIVACY}>")[0] == 250
        return client.data(raw)


async def through_the_door(desk: Desk, receiver: SmtpReceiver, raw: bytes) -> Message:
    """Send `raw` over SMTP, route it, and return its row; it must have opened a ticket."""
    code, reply = await asyncio.to_thread(_send, receiver.port, raw)
    assert code == 250, reply
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    async with desk.db.reading() as session:
        row = (await session.exec(select(Message).where(Message.direction == "in"))).one()
        tickets = (await session.exec(select(Ticket))).all()
    assert row.parse_status == "parsed", row.parse_error
    assert [t.id for t in tickets] == [row.ticket_id]
    return row


# ---- 19 of 1,000 mutated mails raised in the parser ------------------------------------------


async def test_date_in_year_99999999999(desk: Desk, receiver: SmtpReceiver) -> None:
    raw = (
        HEAD + b"Date: Mon, 1 Jan 99999999999 10:00:00 +0800\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nplease delete my data\r\n"
    )
    inbound = parse_email(raw)  # raised OverflowError
    assert inbound.sent_at is None
    assert "BadDate" in inbound.defects
    row = await through_the_door(desk, receiver, raw)
    assert row.text == "please delete my data"


async def test_nul_inside_a_charset_label(desk: Desk, receiver: SmtpReceiver) -> None:
    raw = (
        HEAD.replace(b"delete my data", b"=?gb\x002312?B?yb6z/c7StcTK/b7d?=")
        + b'Content-Type: text/plain; charset="gb\x002312"\r\n\r\n'
        + "请删除我的个人信息。\r\n".encode("gbk")
    )
    inbound = parse_email(raw)  # raised ValueError: embedded null character (charsets.py)
    assert inbound.subject == "删除我的数据"
    assert inbound.text == "请删除我的个人信息。"
    row = await through_the_door(desk, receiver, raw)
    assert row.text == "请删除我的个人信息。"


async def test_nul_inside_an_rfc2231_charset(desk: Desk, receiver: SmtpReceiver) -> None:
    raw = HEAD + (
        b"Content-Type: text/plain; charset*=gb\x00k''x\r\n\r\n" + "请删除我的数据".encode("gbk")
    )
    assert parse_email(raw).text == "请删除我的数据"
    await through_the_door(desk, receiver, raw)


async def test_charset_undefined(desk: Desk, receiver: SmtpReceiver) -> None:
    raw = (
        HEAD.replace(b"delete my data", b"=?undefined?B?yb6z/c7StcTK/b7d?=")
        + b"Content-Type: text/plain; charset=undefined\r\n\r\n"
        + "请删除我的数据\r\n".encode("gbk")  # not UTF-8: the declared codec is tried
    )
    inbound = parse_email(raw)  # raised UnicodeError: the `undefined` codec refuses everything
    assert inbound.subject == "删除我的数据"
    assert inbound.text == "请删除我的数据"
    row = await through_the_door(desk, receiver, raw)
    assert row.subject == "删除我的数据"


def _multipart_nested(depth: int) -> bytes:
    """The outer text, then a chain of multiparts `depth` deep."""
    inner = b"Content-Type: text/plain\r\n\r\ndeepest\r\n"
    for level in reversed(range(depth)):
        inner = (
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n%s\r\n--b%d--\r\n'
            % (level, level, inner, level)
        )
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n--outer\r\n'
        b"Content-Type: text/plain\r\n\r\nplease delete my data\r\n--outer\r\n"
        + inner
        + b"\r\n--outer--\r\n"
    )


async def test_multipart_nested_1200_deep(desk: Desk, receiver: SmtpReceiver) -> None:
    raw = _multipart_nested(1200)
    inbound = parse_email(raw)  # raised RecursionError
    assert inbound.text == "please delete my data"  # the outer text is kept
    assert "MimeTooDeepDefect" in inbound.defects
    # What lies below the cap is kept as it came, as one attachment.
    [deep] = inbound.attachments
    assert deep.content_type == "application/octet-stream"
    assert deep.content is not None
    assert b"deepest" in deep.content
    row = await through_the_door(desk, receiver, raw)
    assert row.text == "please delete my data"


def test_multipart_nested_to_the_cap_is_read_whole() -> None:
    inbound = parse_email(_multipart_nested(MAX_MIME_DEPTH - 3))
    assert inbound.text == "please delete my data\n\ndeepest"
    assert "MimeTooDeepDefect" not in inbound.defects


async def test_message_rfc822_nested_1200_deep(desk: Desk, receiver: SmtpReceiver) -> None:
    forwarded = b"Content-Type: text/plain\r\n\r\nthe original\r\n"
    for level in range(1200):
        forwarded = (
            b"From: fwd%d@example.com\r\nSubject: Fwd\r\nContent-Type: message/rfc822\r\n\r\n%s"
            % (level, forwarded)
        )
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n'
        b"Content-Type: text/plain\r\n\r\nplease delete my data, see the forward\r\n--o\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + forwarded + b"\r\n--o--\r\n"
    )
    inbound = parse_email(raw)  # raised RecursionError
    assert inbound.text.startswith("please delete my data, see the forward")
    assert "MimeTooDeepDefect" in inbound.defects
    row = await through_the_door(desk, receiver, raw)
    assert row.text is not None
    assert row.text.startswith("please delete my data")


# ---- NUL bytes that PostgreSQL refuses ---------------------------------------------------------


async def test_nul_inside_the_message_id(desk: Desk, receiver: SmtpReceiver) -> None:
    raw = HEAD.replace(b"<hostile-1@example.com>", b"<hostile\x00-1@example.com>") + (
        b"Content-Type: text/plain\r\n\r\nplease delete my data\r\n"
    )
    # Stored under a derived id: a NUL id made every PostgreSQL insert fail (451 for ever).
    assert message_id_of(raw).endswith("@rightsdesk.invalid")
    await through_the_door(desk, receiver, raw)


async def test_nul_in_the_subject_body_name_and_references(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    raw = (
        b"From: Zhang\x00San <zhang.san@example.com>\r\nTo: privacy@localhost, x\x00@y.example\r\n"
        b"Subject: delete\x00 my data\r\nMessage-ID: <hostile-2@example.com>\r\n"
        b"References: <a\x00b@example.com> <ok@example.com>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nplease\x00 delete my data\r\n"
    )
    inbound = parse_email(raw)
    assert "\x00" not in inbound.subject + inbound.text + (inbound.sender_name or "")
    assert inbound.references == ["ok@example.com"]
    row = await through_the_door(desk, receiver, raw)
    assert row.subject == "delete\ufffd my data"
