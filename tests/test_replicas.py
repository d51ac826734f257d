"""Three real `rightsdesk run` processes on one PostgreSQL: every scheduled notice goes out
once in total, one replica at a time reads the mailbox, and when it is killed another takes
over."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import text
from sqlmodel import func, select

from rightsdesk.config import Settings
from rightsdesk.models import Channel, Message, RequestType, SentNotice
from rightsdesk.service import Desk
from rightsdesk.tickets import Contact, NewTicket
from tests.conftest import ImapServer


def mail(i: int, run: str) -> bytes:
    return (
        f"From: user{i}@example.com\r\nTo: privacy@example.com\r\nSubject: request {i}\r\n"
        f"Message-ID: <{run}-{i}@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"请删除我的数据 {i}\r\n"
    ).encode()


async def _prepare(settings: Settings, today: dt.date) -> None:
    """A clean desk with three tickets whose answer is due today."""
    desk = Desk.build(settings)
    try:
        async with desk.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE sentnotice, outboxentry, verificationchallenge, attachment, "
                    "message, event, tickettype, ticket, requestercontact, requester, account, "
                    "ticketcounter, mailboxstate RESTART IDENTITY CASCADE"
                )
            )
        received = next(
            today - dt.timedelta(days=n)
            for n in range(1, 60)
            if desk.policy.compute(
                dt.datetime.combine(today - dt.timedelta(days=n), dt.time(10), desk.policy.tz),
                [RequestType.ACCESS],
            ).response_due
            == today
        )
        for n in range(3):
            await desk.tickets.open(
                NewTicket(
                    channel=Channel.EMAIL,
                    contact=Contact.email(f"due{n}@example.com"),
                    types=[RequestType.ACCESS],
                    received_at=dt.datetime.combine(received, dt.time(10), desk.policy.tz),
                )
            )
    finally:
        await desk.close()


async def _counts(settings: Settings) -> tuple[int, list[tuple[str, str]]]:
    desk = Desk.build(settings)
    try:
        async with desk.db.reading() as session:
            stored = (
                await session.exec(
                    select(func.count()).select_from(Message).where(Message.direction == "in")
                )
            ).one()
            notices = list((await session.exec(select(SentNotice.kind, SentNotice.key))).all())
            return stored, notices
    finally:
        await desk.close()


@pytest.mark.slow
def test_three_replicas_one_killed(
    postgres_database: str, dovecot: ImapServer, tmp_path: Path
) -> None:
    folder = f"replicas{uuid.uuid4().hex[:8]}"
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False) as client:
        client.login(dovecot.user, dovecot.password)
        client.create_folder(folder)
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(
        RIGHTSDESK_DATABASE__URL=postgres_database,
        RIGHTSDESK_SMTP__ENABLED="false",
        RIGHTSDESK_CONSOLE__PORT="0",  # every replica serves the console, each on its own port
        RIGHTSDESK_PORTAL__PORT="0",  # and the portal
        RIGHTSDESK_IMAP__HOST=dovecot.host,
        RIGHTSDESK_IMAP__PORT=str(dovecot.port),
        RIGHTSDESK_IMAP__SSL="false",
        RIGHTSDESK_IMAP__USERNAME=dovecot.user,
        RIGHTSDESK_IMAP__PASSWORD=dovecot.password,
        RIGHTSDESK_IMAP__FOLDER=folder,
        RIGHTSDESK_IMAP__PROCESSED_FOLDER=f"{folder}-done",
        RIGHTSDESK_IMAP__POLL_SECONDS="1",
        RIGHTSDESK_SECURITY__SIGNING_KEY="shared-by-all-replicas-0123456789",
        # Whatever day the suite runs on, make it a working day with the digest due.
        RIGHTSDESK_DEADLINES__EXTRA_WORKDAYS=f'["{today.isoformat()}"]',
        RIGHTSDESK_SCHEDULER__DIGEST_TIME="00:00:00",
        RIGHTSDESK_SCHEDULER__TICK_SECONDS="1",
    )
    settings = Settings(
        database={"url": postgres_database},
        deadlines={"extra_workdays": [today]},
    )
    asyncio.run(_prepare(settings, today))

    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for n in range(3):
            workdir = tmp_path / f"replica{n}"
            workdir.mkdir()
            logs.append(workdir / "service.log")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "rightsdesk", "run"],
                    cwd=workdir,
                    env=env,
                    stdout=logs[-1].open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        run = uuid.uuid4().hex[:8]
        with IMAPClient(dovecot.host, port=dovecot.port, ssl=False) as client:
            client.login(dovecot.user, dovecot.password)
            for i in range(30):
                client.append(folder, mail(i, run))
        _wait(lambda: asyncio.run(_counts(settings))[0] >= 30, "the first 30 stored")
        leaders = [n for n, log in enumerate(logs) if b"leading imap-watcher" in log.read_bytes()]
        assert len(leaders) == 1, "exactly one replica reads the mailbox"
        processes[leaders[0]].send_signal(signal.SIGKILL)
        processes[leaders[0]].wait(timeout=10)

        with IMAPClient(dovecot.host, port=dovecot.port, ssl=False) as client:
            client.login(dovecot.user, dovecot.password)
            for i in range(30, 60):
                client.append(folder, mail(i, run))
        _wait(lambda: asyncio.run(_counts(settings))[0] >= 60, "a survivor took over")
        time.sleep(3)  # a few more ticks of every replica's scheduler
        stored, notices = asyncio.run(_counts(settings))
        assert stored == 60
        assert len(notices) == len(set(notices))  # nothing twice
        kinds = sorted(kind for kind, _ in notices)
        assert kinds.count("digest") == 1
        assert kinds.count("reminder") == 3  # the three tickets due today, once each
        survivors = [p for n, p in enumerate(processes) if n != leaders[0]]
        for process in survivors:
            process.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=10) for p in survivors] == [0, 0]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _wait(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.5)
