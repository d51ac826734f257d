"""The SMTP door, through a real socket with Python's own SMTP client, on both databases."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from intake.mail import mail_dedupe_key
from intake.smtp import SmtpReceiver
from rightsdesk.config import Settings
from rightsdesk.models import Message, Ticket
from rightsdesk.pipeline import IntakeWorker
from rightsdesk.service import Desk
from tests.conftest import corpus_files
from tests.conftest import count_rows as _count

PRIVACY = "privacy@localhost"


@pytest.fixture
async def receiver(desk: Desk) -> AsyncIterator[SmtpReceiver]:
    desk.settings.smtp.port = 0
    server = SmtpReceiver(desk.settings.smtp, desk.settings.mail, desk.inbox, [PRIVACY])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _send(port: int, raw: bytes, to: str = PRIVACY, sender: str = "a@example.com") -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.com")
        code, reply = client.docmd("MAIL", f"FROM:<{sender}>")
        assert code == 250, reply
        code, reply = client.docmd("RCPT", f"TO:<{to}>")
        if code != 250:
            raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
        code, reply = client.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return reply.decode()


async def send(port: int, raw: bytes, **kwargs: str) -> str:
    return await asyncio.to_thread(_send, port, raw, **kwargs)


REQUEST = (
    b"From: =?utf-8?b?5byg5LiJ?= <zhang.san@example.com>\r\n"
    b"To: privacy@localhost\r\nSubject: =?utf-8?b?5Yig6Zmk5oiR55qE5pWw5o2u?=\r\n"
    b"Message-ID: <req-1@example.com>\r\nContent-Type: text/plain; charset=gbk\r\n\r\n"
    + "请删除我的全部个人信息。\r\n".encode("gbk")
)


async def test_request_is_stored_raw_before_the_250_then_ticketed(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    reply = await send(receiver.port, REQUEST)
    assert reply.startswith("2.0.0 OK stored as #")
    async with desk.db.transaction() as session:
        row = (await session.exec(select(Message).where(Message.direction == "in"))).one()
    # Durable and untouched at the moment of the 250: the worker has not run yet.
    assert row.raw == REQUEST
    assert row.parse_status == "stored"
    assert row.envelope_to == [PRIVACY]
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    [ticket] = await desk.tickets.find()
    detail = await desk.tickets.detail(ticket.public_id)
    assert ticket.subject == "删除我的数据"
    assert ticket.contact_value == "zhang.san@example.com"
    assert detail.messages[0].text == "请删除我的全部个人信息。"
    assert detail.messages[0].parse_status == "parsed"


async def test_other_recipients_are_refused_never_an_open_relay(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await send(receiver.port, REQUEST, to="victim@elsewhere.example")
    assert refused.value.recipients["victim@elsewhere.example"][0] == 550
    assert await _count(desk, Message) == 0


async def test_recipient_match_ignores_case(desk: Desk, receiver: SmtpReceiver) -> None:
    await send(receiver.port, REQUEST, to="Privacy@LOCALHOST")
    assert await _count(desk, Message) == 1


async def test_rcpt_to_bare_postmaster_is_mail_to_the_desk(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    # RFC 5321 4.5.1: "postmaster" without a domain must be accepted (it was 550).
    to_postmaster = REQUEST.replace(b"To: privacy@localhost", b"To: postmaster")
    await send(receiver.port, to_postmaster, to="postmaster")
    await send(receiver.port, REQUEST.replace(b"req-1@", b"req-2@"), to="Postmaster@localhost")
    async with desk.db.reading() as session:
        rows = (await session.exec(select(Message).order_by(col(Message.id)))).all()
    assert [row.envelope_to for row in rows] == [[PRIVACY], [PRIVACY]]
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    assert await _count(desk, Ticket) == 2
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # still nobody else's postmaster
        await send(receiver.port, REQUEST, to="postmaster@elsewhere.example")


async def test_mail_from_privacy_at_localhost_is_stored_ignored_and_never_answered(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    # The desk's own address as the sender: a ticket and an acknowledgement to ourselves was
    # a mail loop. (Not our signed Message-ID: someone wrote it, or a misconfigured MTA.)
    loop = REQUEST.replace(b"<zhang.san@example.com>", b"<PRIVACY@localhost>")
    await send(receiver.port, loop, sender="privacy@localhost")
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    async with desk.db.reading() as session:
        [row] = (await session.exec(select(Message))).all()  # nothing queued to go out
    assert row.parse_status == "ignored"
    assert row.parse_error is not None
    assert "own addresses" in row.parse_error
    assert row.details["ignored"] == row.parse_error
    assert row.ticket_id is None
    assert await _count(desk, Ticket) == 0


async def test_smtputf8_mail_from_zhang_san_at_an_idn_domain_is_routed_not_parked(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    sender = "张三@例子.中国"
    raw = (
        f"From: 张三 <{sender}>\r\nTo: privacy@localhost\r\nSubject: 删除我的数据\r\n"
        "Message-ID: <utf8-1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "请删除我的全部个人信息。\r\n"
    ).encode()

    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", receiver.port, timeout=30) as client:
            client.sendmail(sender, [PRIVACY], raw, mail_options=["SMTPUTF8"])

    await asyncio.to_thread(deliver)
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    async with desk.db.reading() as session:
        [row] = (await session.exec(select(Message))).all()
    # It was "failed: no sender address to answer": the From header's address is not one the
    # parser takes, and the envelope's was refused as unmailable.
    assert row.parse_status == "parsed", row.parse_error
    assert row.sender == sender
    assert row.details["sender_from"] == "envelope"
    assert row.sender_authenticated is False
    [ticket] = await desk.tickets.find()
    assert ticket.contact_value == sender
    # Our mail cannot be addressed to it (no SMTPUTF8 out): no acknowledgement is queued.
    assert await _count(desk, Message) == 1


async def test_oversized_mail_is_refused_552(desk: Desk, settings: Settings) -> None:
    settings.mail.max_message_bytes = 4096
    settings.smtp.port = 0
    server = SmtpReceiver(settings.smtp, settings.mail, desk.inbox, [PRIVACY])
    await server.start()
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(server.port, REQUEST + b"x" * 10_000 + b"\r\n")
        assert refused.value.smtp_code == 552
    finally:
        await server.stop()
    assert await _count(desk, Message) == 0


async def test_duplicate_delivery_is_stored_once(desk: Desk, receiver: SmtpReceiver) -> None:
    first = await send(receiver.port, REQUEST)
    again = await send(receiver.port, REQUEST.replace(b"From:", b"Received: by mx2\r\nFrom:"))
    assert first == again  # both acknowledged, as the same stored message
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    assert await _count(desk, Message) == 1
    assert await _count(desk, Ticket) == 1


async def test_concurrent_senders_share_group_commits(desk: Desk, receiver: SmtpReceiver) -> None:
    raws = [REQUEST.replace(b"req-1@", f"req-{i}@".encode()) for i in range(40)]
    replies = await asyncio.gather(*(send(receiver.port, raw) for raw in raws))
    assert len(set(replies)) == 40
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    assert await _count(desk, Ticket) == 40  # distinct Message-IDs: each is a new request


async def test_storage_failure_answers_451_so_the_sender_retries(settings: Settings) -> None:
    settings.database.url = "postgresql+asyncpg://postgres@127.0.0.1:1/unreachable"
    settings.smtp.port = 0
    broken = Desk.build(settings)
    server = SmtpReceiver(settings.smtp, settings.mail, broken.inbox, [PRIVACY])
    await server.start()
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(server.port, REQUEST)
        assert refused.value.smtp_code == 451
    finally:
        await server.stop()
        await broken.close()


@pytest.mark.slow
async def test_every_corpus_mail_through_smtp_is_stored_byte_identical(
    desk: Desk, receiver: SmtpReceiver
) -> None:
    sent: dict[str, bytes] = {}
    for box in corpus_files():
        # On the wire every line ends in CRLF (RFC 5321), the last one included: that is what
        # a real MTA hands us, and what must be stored to the byte.
        raw = box.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        raw += b"" if raw.endswith(b"\r\n") else b"\r\n"
        await send(receiver.port, raw)
        sent[mail_dedupe_key(raw)] = raw
    async with desk.db.transaction() as session:
        rows = (
            await session.exec(
                select(Message).where(Message.direction == "in").order_by(col(Message.id))
            )
        ).all()
    assert len(rows) == len(sent)
    for row in rows:
        assert row.dedupe_key is not None
        assert row.raw == sent[row.dedupe_key]
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    async with desk.db.transaction() as session:
        rows = (await session.exec(select(Message).where(Message.direction == "in"))).all()
    assert len(rows) == 106  # variants that share a Message-ID are different messages
    for row in rows:
        if row.parse_status == "failed":
            # Mail with no From address cannot be answered; it stays visible to the DPO.
            assert row.parse_error == "ValueError: no sender address to answer", row.id
        else:
            assert row.parse_status == "parsed", row.id
            # Automatic mail never opens a ticket; everything else does.
            assert (row.ticket_id is None) == bool(row.auto_generated), row.id
    assert await _count(desk, Ticket) == len([r for r in rows if r.ticket_id])


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (openssl, as any admin would)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_starttls_is_offered_and_works_with_a_configured_certificate(
    desk: Desk, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    settings = desk.settings.smtp.model_copy(
        update={"port": 0, "tls_cert_file": cert, "tls_key_file": key}
    )
    server = SmtpReceiver(settings, desk.settings.mail, desk.inbox, [PRIVACY])
    await server.start()

    def deliver() -> tuple[bool, str]:
        context = ssl.create_default_context(cafile=str(cert))
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.ehlo("client.example.com")
            offered = client.has_extn("starttls")
            client.starttls(context=context)  # verifies our certificate
            client.ehlo("client.example.com")
            client.sendmail("a@example.com", [PRIVACY], REQUEST)
            assert isinstance(client.sock, ssl.SSLSocket)
            return offered, client.sock.version() or ""

    try:
        offered, version = await asyncio.to_thread(deliver)
    finally:
        await server.stop()
    assert offered
    assert version.startswith("TLSv1.")
    assert await _count(desk, Message) == 1


async def test_no_certificate_no_starttls(desk: Desk, receiver: SmtpReceiver) -> None:
    def offered() -> bool:
        with smtplib.SMTP("127.0.0.1", receiver.port, timeout=30) as client:
            client.ehlo("client.example.com")
            return bool(client.has_extn("starttls"))

    assert await asyncio.to_thread(offered) is False
