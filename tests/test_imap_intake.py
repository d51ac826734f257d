"""The IMAP door against a real Dovecot: store, then move; never lose, never duplicate."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from imapclient import IMAPClient
from sqlmodel import col, select

from intake.imap import ImapWatcher
from rightsdesk.models import MailboxState, Message, Ticket
from rightsdesk.pipeline import IntakeWorker
from rightsdesk.service import Desk
from tests.conftest import ImapServer, corpus_files
from tests.conftest import count_rows as count


@pytest.fixture
def mailbox(dovecot: ImapServer) -> tuple[ImapServer, str]:
    """A fresh folder for this test (the watcher reads it; processed mail goes to another)."""
    folder = f"t{uuid.uuid4().hex[:10]}"
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False) as client:
        client.login(dovecot.user, dovecot.password)
        client.create_folder(folder)
    return dovecot, folder


def client_for(server: ImapServer) -> IMAPClient:
    client = IMAPClient(server.host, port=server.port, ssl=False)
    client.login(server.user, server.password)
    return client


def append(server: ImapServer, folder: str, *raws: bytes) -> None:
    with client_for(server) as client:
        for raw in raws:
            client.append(folder, raw)


def folder_count(server: ImapServer, folder: str) -> int:
    with client_for(server) as client:
        return int(client.select_folder(folder, readonly=True)[b"EXISTS"])


def watcher_for(
    desk: Desk, server: ImapServer, folder: str, kind: type[ImapWatcher] = ImapWatcher
) -> ImapWatcher:
    settings = desk.settings.imap.model_copy(
        update={
            "host": server.host,
            "port": server.port,
            "ssl": False,
            "username": server.user,
            "folder": folder,
            "processed_folder": f"{folder}-done",
            "poll_seconds": 1.0,
        }
    )
    return kind(settings, server.password, desk.settings.mail, desk.inbox, desk.db, desk.clock)


def request(i: int) -> bytes:
    return (
        f"From: user{i}@example.com\r\nTo: privacy@example.com\r\nSubject: request {i}\r\n"
        f"Message-ID: <imap-{i}@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"请删除我的数据 {i}\r\n"
    ).encode()


async def test_sweep_stores_then_moves(desk: Desk, mailbox: tuple[ImapServer, str]) -> None:
    server, folder = mailbox
    append(server, folder, request(1), request(2), request(3))
    watcher = watcher_for(desk, server, folder)
    await watcher.connect()
    try:
        assert await watcher.sweep() == 3
        assert await watcher.sweep() == 0  # nothing new, nothing stored twice
    finally:
        await watcher._close_quietly()
    assert folder_count(server, folder) == 0
    assert folder_count(server, f"{folder}-done") == 3
    async with desk.db.transaction() as session:
        state = await session.get_one(MailboxState, folder)
        rows = (
            await session.exec(
                select(Message).where(Message.direction == "in").order_by(col(Message.id))
            )
        ).all()
    assert state.last_uid == 3
    assert [r.raw for r in rows] == [request(1), request(2), request(3)]
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    assert await count(desk, Ticket) == 3


class CrashBeforeMove(ImapWatcher):
    """Dies between the database commit and the IMAP move, like a kill -9 there."""

    async def _mark_done(self, uid: int) -> None:
        raise KeyboardInterrupt("killed")


async def test_crash_between_commit_and_move_causes_no_duplicate(
    desk: Desk, mailbox: tuple[ImapServer, str]
) -> None:
    server, folder = mailbox
    append(server, folder, request(1), request(2))
    crashing = watcher_for(desk, server, folder, CrashBeforeMove)
    await crashing.connect()
    with pytest.raises(KeyboardInterrupt):
        await crashing.sweep()
    await crashing._close_quietly()
    assert await count(desk, Message) == 1  # the first was committed, then the crash
    assert folder_count(server, folder) == 2  # and nothing was moved

    restarted = watcher_for(desk, server, folder)
    await restarted.connect()
    try:
        assert await restarted.sweep() == 1  # only the second is new
    finally:
        await restarted._close_quietly()
    assert await count(desk, Message) == 2
    assert folder_count(server, folder) == 0


async def test_oversized_mail_is_not_downloaded_and_listed(
    desk: Desk, mailbox: tuple[ImapServer, str]
) -> None:
    server, folder = mailbox
    desk.settings.mail.max_message_bytes = 2048
    append(server, folder, request(1) + b"x" * 5000 + b"\r\n", request(2))
    watcher = watcher_for(desk, server, folder)
    await watcher.connect()
    try:
        await watcher.sweep()
    finally:
        await watcher._close_quietly()
    problems = await desk.pipeline.problems()
    assert [(p.parse_status, p.raw) for p in problems] == [("too_large", None)]
    assert problems[0].raw_size > 5000
    assert await count(desk, Message) == 2


async def test_idle_picks_up_new_mail_and_stops_promptly(
    desk: Desk, mailbox: tuple[ImapServer, str]
) -> None:
    server, folder = mailbox
    watcher = watcher_for(desk, server, folder)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.sleep(1.0)  # connected and idling
        append(server, folder, request(7))
        for _ in range(100):
            if await count(desk, Message):
                break
            await asyncio.sleep(0.1)
        assert await count(desk, Message) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_unreachable_server_is_retried_not_fatal(desk: Desk) -> None:
    settings = desk.settings.imap.model_copy(update={"host": "127.0.0.1", "port": 1, "ssl": False})
    watcher = ImapWatcher(settings, "x", desk.settings.mail, desk.inbox, desk.db, desk.clock)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(1.5)
    assert not task.done()  # backing off, not crashed
    stop.set()
    await asyncio.wait_for(task, timeout=5)


@pytest.mark.slow
async def test_every_corpus_mail_through_imap_is_stored_byte_identical(
    desk: Desk, mailbox: tuple[ImapServer, str]
) -> None:
    server, folder = mailbox
    sent = []
    for box in corpus_files():
        raw = box.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        sent.append(raw)
    append(server, folder, *sent)
    watcher = watcher_for(desk, server, folder)
    await watcher.connect()
    try:
        assert await watcher.sweep() == 106
    finally:
        await watcher._close_quietly()
    async with desk.db.transaction() as session:
        rows = (
            await session.exec(
                select(Message).where(Message.direction == "in").order_by(col(Message.id))
            )
        ).all()
    assert [r.raw for r in rows] == sent
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    async with desk.db.transaction() as session:
        statuses = set((await session.exec(select(Message.parse_status))).all())
    assert statuses <= {"parsed", "failed"}


async def test_a_new_uidvalidity_rescans_without_storing_twice(
    desk: Desk, mailbox: tuple[ImapServer, str]
) -> None:
    server, folder = mailbox
    watcher = watcher_for(desk, server, folder)
    watcher.settings = watcher.settings.model_copy(update={"processed_folder": ""})  # flag only
    append(server, folder, request(1), request(2))
    await watcher.connect()
    try:
        assert await watcher.sweep() == 2
        # The server's mailbox is rebuilt: same mail, new UIDs, a new UIDVALIDITY.
        with client_for(server) as client:
            before = int(client.select_folder(folder)[b"UIDVALIDITY"])
            client.close_folder()
            client.delete_folder(folder)
            client.create_folder(folder)
            client.append(folder, request(1))
            client.append(folder, request(2))
            client.append(folder, request(3))
            after = int(client.select_folder(folder)[b"UIDVALIDITY"])
        assert after != before
        assert await watcher.sweep() == 1  # only request 3 is new to the desk
    finally:
        await watcher._close_quietly()
    assert await count(desk, Message) == 3
    async with desk.db.transaction() as session:
        state = await session.get_one(MailboxState, folder)
    assert (state.uidvalidity, state.last_uid) == (after, 3)
