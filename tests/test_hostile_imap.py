"""The IMAP door against the same hostile mail as the SMTP door (tests/test_hostile_smtp.py):
fetched from a real Dovecot, stored, routed into tickets, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlmodel import select

from rightsdesk.models import Message, Ticket
from rightsdesk.pipeline import IntakeWorker
from rightsdesk.service import Desk
from tests.conftest import ImapServer
from tests.hostile_mail import mutated_mails
from tests.test_hostile_smtp import HEAD, _multipart_nested
from tests.test_imap_intake import append, mailbox, watcher_for

__all__ = ["mailbox"]  # the fixture, shared with the IMAP door's own tests

HOSTILE = {  # Message-ID: the mail
    "imap-date@example.com": HEAD.replace(b"hostile-1", b"imap-date")
    + b"Date: Mon, 1 Jan 99999999999 10:00:00 +0800\r\n\r\nplease delete my data\r\n",
    "imap-nul@example.com": HEAD.replace(b"hostile-1", b"imap-nul")
    + b'Content-Type: text/plain; charset="gb\x002312"\r\n\r\n'
    + "请删除我的个人信息。\r\n".encode("gbk"),
    "imap-undefined@example.com": HEAD.replace(b"hostile-1", b"imap-undefined")
    + b"Content-Type: text/plain; charset=undefined\r\n\r\n"
    + "请删除我的数据\r\n".encode("gbk"),
    "imap-deep@example.com": _multipart_nested(1200).replace(b"hostile-1", b"imap-deep"),
}


@pytest.mark.slow
async def test_the_hostile_mail_and_100_mutated_ones_by_imap(
    desk: Desk, mailbox: tuple[ImapServer, str]
) -> None:
    server, folder = mailbox
    append(server, folder, *HOSTILE.values(), *mutated_mails(100, seed=2012))
    watcher = watcher_for(desk, server, folder)
    await watcher.connect()
    try:
        assert await watcher.sweep() >= 100
    finally:
        await watcher._close_quietly()
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    async with desk.db.reading() as session:
        rows = (await session.exec(select(Message).where(Message.direction == "in"))).all()
        tickets = (await session.exec(select(Ticket.id))).all()
    by_id = {row.message_id: row for row in rows}
    for message_id in HOSTILE:
        row = by_id[message_id]
        assert row.parse_status == "parsed", (message_id, row.parse_error)
        assert row.ticket_id in tickets, message_id
    failed = {row.parse_error for row in rows if row.parse_status == "failed"}
    assert failed <= {"ValueError: no sender address to answer"}, failed
