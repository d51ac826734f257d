"""The flood of issue #12: 1,000 mutated mails (tests/hostile_mail.py, seed 12) through a real
SMTP socket into a running intake, on SQLite and PostgreSQL. It must end with every mail
acknowledged, none stuck in `intake failed` by a parser exception, and the desk answering a
normal request within 5 s. (Before: 19 of 1,000 raised in the parser after their 250.)
"""

from __future__ import annotations

import asyncio
import smtplib
import time

import pytest
from sqlmodel import col, func, select

from intake.mail import parse_email
from intake.smtp import SmtpReceiver
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Message, OutboxEntry
from rightsdesk.pipeline import IntakeWorker
from rightsdesk.service import Desk
from tests.conftest import mail
from tests.hostile_mail import mutated_mails

PRIVACY = "privacy@localhost"
# Routing outcomes that are no parser failure: mail without any From address cannot be answered.
NOT_A_PARSER_FAILURE = {"ValueError: no sender address to answer"}


def _send_all(port: int, mails: list[bytes]) -> list[int]:
    """One SMTP session sending `mails` one after the other; the reply code of each."""
    codes = []
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("flood.example.com")
        for raw in mails:
            client.docmd("MAIL", "FROM:<flood@example.com>")
            client.docmd("RCPT", f"TO:<{PRIVACY}>")
            codes.append(client.data(raw)[0])
            client.rset()
    return codes


@pytest.mark.slow
async def test_a_flood_of_1000_mutated_mails(settings: Settings, clock: FrozenClock) -> None:
    mails = mutated_mails(1000, seed=12)
    settings.smtp.port = 0
    desk = Desk.build(settings, clock)
    receiver = SmtpReceiver(settings.smtp, settings.mail, desk.inbox, [PRIVACY], cpu=desk.cpu)
    await receiver.start()
    stop = asyncio.Event()
    worker = asyncio.create_task(IntakeWorker(desk.pipeline, desk.inbox).run(stop))
    try:
        clients = 8
        codes = await asyncio.gather(
            *(
                asyncio.to_thread(_send_all, receiver.port, mails[i::clients])
                for i in range(clients)
            )
        )
        assert {code for batch in codes for code in batch} == {250}
        # Routing catches up once the flood is over.
        async with asyncio.timeout(120):
            while await _waiting(desk):  # noqa: ASYNC110 (a count in the database, no event)
                await asyncio.sleep(0.2)
        # Then a normal request is answered (ticket opened, acknowledgement queued) within 5 s.
        started = time.monotonic()
        raw = mail("请删除我的个人信息", sender="after.flood@example.com", message_id="after@x")
        assert await asyncio.to_thread(_send_all, receiver.port, [raw]) == [250]
        async with asyncio.timeout(30):
            while not await _acknowledged(desk, "after.flood@example.com"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        answered = time.monotonic() - started
    finally:
        stop.set()
        await worker
        await receiver.stop()
        await desk.close()
    assert answered < 5.0
    desk = Desk.build(settings, clock)
    try:
        async with desk.db.reading() as session:
            rows = (
                await session.exec(
                    select(Message)
                    .where(Message.direction == "in")
                    .where(Message.message_id != "after@x")
                )
            ).all()
    finally:
        await desk.close()
    # Every mail stored (mutations that change nothing the dedupe key reads are one message).
    assert len(rows) > 990
    failed = {row.id: row.parse_error for row in rows if row.parse_status == "failed"}
    assert set(failed.values()) <= NOT_A_PARSER_FAILURE, failed
    assert {row.parse_status for row in rows} <= {"parsed", "ignored", "failed"}
    for row in rows:  # and the parser, asked again, raises on none of them
        assert row.raw is not None
        inbound = parse_email(row.raw)
        # A mail with no usable From: is routed by its envelope sender (MAIL FROM, #13), and
        # every mail of the flood had one: only a mail with neither may wait for a person.
        if row.id in failed:
            assert inbound.sender is None, row.id
            assert not row.envelope_from, row.id


async def _waiting(desk: Desk) -> int:
    async with desk.db.reading() as session:
        found = await session.exec(
            select(func.count(col(Message.id))).where(Message.parse_status == "stored")
        )
        return found.one()


async def _acknowledged(desk: Desk, sender: str) -> bool:
    async with desk.db.reading() as session:
        found = await session.exec(
            select(func.count(col(OutboxEntry.id)))
            .where(OutboxEntry.recipient == sender)
            .where(OutboxEntry.kind == "acknowledgement")
        )
        return found.one() > 0
