"""kill -9 the real service mid-burst; after a restart nothing acknowledged is lost or doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest
from imapclient import IMAPClient
from sqlmodel import col, func, select

from rightsdesk.config import Settings
from rightsdesk.models import Message, Ticket
from rightsdesk.service import Desk
from tests.conftest import ImapServer, free_port

BURST = 500
CLIENTS = 20


class Service:
    """`rightsdesk run` as its users run it: a process with a config and an environment."""

    # Every process started, so that one a failed test left running is killed after it
    # (conftest): it would go on routing, sending and ticking in the next test's database.
    started: ClassVar[list[subprocess.Popen[bytes]]] = []

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        # The web doors on free ports unless a test names one: tests run side by side. The
        # test's own dict (it may change a variable before a restart).
        env.setdefault("RIGHTSDESK_CONSOLE__PORT", "0")
        env.setdefault("RIGHTSDESK_PORTAL__PORT", "0")
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "service.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rightsdesk", "run"],
            cwd=self.workdir,
            env=self.env,
            stderr=log,
            stdout=log,
        )
        Service.started.append(self.process)
        deadline = time.monotonic() + 60
        while (
            b"rightsdesk ready"
            not in (self.workdir / "service.log").read_bytes().split(b"=== start")[-1]
        ):
            assert self.process.poll() is None, (self.workdir / "service.log").read_text()
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.05)

    def mark(self) -> None:
        with (self.workdir / "service.log").open("ab") as log:
            log.write(b"\n=== start\n")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def service_env(database_url: str, tmp_path: Path) -> tuple[Path, dict[str, str], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(
        RIGHTSDESK_DATABASE__URL=database_url,
        RIGHTSDESK_SMTP__PORT=str(port),
        RIGHTSDESK_CONSOLE__PORT="0",
        RIGHTSDESK_PORTAL__PORT="0",
        RIGHTSDESK_DESK__DATA_DIR=str(tmp_path / "var"),
        RIGHTSDESK_DESK__PRIVACY_ADDRESSES='["privacy@localhost"]',
        # CLIENTS mail servers at once, every one of them from 127.0.0.1.
        RIGHTSDESK_SMTP__MAX_CONNECTIONS_PER_CLIENT=str(CLIENTS),
    )
    return tmp_path, env, port


def request(i: int, run: str) -> bytes:
    return (
        f"From: user{i}@example.com\r\nTo: privacy@localhost\r\n"
        f"Subject: request {i}\r\nMessage-ID: <{run}-{i}@example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"请删除我的个人数据。编号 {i}\r\n"
    ).encode()


def _try_send(port: int, raw: bytes) -> bool:
    """True only if the server answered 250 to the DATA."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("sender@example.com", ["privacy@localhost"], raw)
        return True
    except (OSError, smtplib.SMTPException):
        return False


async def _settle(settings: Settings, expected: int) -> list[Message]:
    """Wait (up to a minute) until `expected` messages are stored and routed."""
    desk = Desk.build(settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            async with desk.db.transaction() as session:
                rows = list(
                    (await session.exec(select(Message).where(Message.direction == "in"))).all()
                )
            if len(rows) >= expected and all(r.parse_status != "stored" for r in rows):
                return rows
            assert time.monotonic() < deadline, f"{len(rows)} of {expected} routed"
            await asyncio.sleep(0.2)
    finally:
        await desk.close()


async def _tickets(settings: Settings) -> int:
    desk = Desk.build(settings)
    try:
        async with desk.db.transaction() as session:
            return (await session.exec(select(func.count()).select_from(Ticket))).one()
    finally:
        await desk.close()


def _settings(database_url: str, workdir: Path) -> Settings:
    return Settings(database={"url": database_url}, desk={"data_dir": workdir / "var"})


@pytest.mark.slow
def test_kill_9_during_an_smtp_burst_loses_and_doubles_nothing(
    service_env: tuple[Path, dict[str, str], int], database_url: str
) -> None:
    workdir, env, port = service_env
    run = uuid.uuid4().hex[:8]
    service = Service(workdir, env)
    service.start()
    acked: set[int] = set()
    lock = threading.Lock()

    def send(i: int) -> None:
        if _try_send(port, request(i, run)):
            with lock:
                acked.add(i)
                if len(acked) == BURST // 3:
                    service.kill9()  # in the middle of the burst, mid-transaction for some

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(send, range(BURST)))
    assert BURST // 3 <= len(acked) < BURST, "the kill must land mid-burst"

    service.mark()
    service.start()
    # A real MTA retries what got no 250; some senders also retry what did (a lost reply).
    retry = [i for i in range(BURST) if i not in acked] + sorted(acked)[:25]
    with ThreadPoolExecutor(CLIENTS) as pool:
        assert all(pool.map(lambda i: _try_send(port, request(i, run)), retry))

    settings = _settings(database_url, workdir)
    rows = asyncio.run(_settle(settings, BURST))
    by_id = {r.message_id: r for r in rows}
    assert len(rows) == BURST  # stored once each, whatever was retried
    for i in range(BURST):
        row = by_id[f"{run}-{i}@example.com"]
        assert row.ticket_id is not None, i
    assert len({r.ticket_id for r in rows}) == BURST  # exactly one ticket each
    assert asyncio.run(_tickets(settings)) == BURST
    assert service.stop() == 0


@pytest.mark.slow
def test_kill_9_during_an_imap_sweep_loses_and_doubles_nothing(
    service_env: tuple[Path, dict[str, str], int], database_url: str, dovecot: ImapServer
) -> None:
    workdir, env, _ = service_env
    folder = f"crash{uuid.uuid4().hex[:8]}"
    count = 300
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False) as client:
        client.login(dovecot.user, dovecot.password)
        client.create_folder(folder)
        for i in range(count):
            client.append(folder, request(i, folder))
    env.update(
        RIGHTSDESK_SMTP__ENABLED="false",
        RIGHTSDESK_IMAP__HOST=dovecot.host,
        RIGHTSDESK_IMAP__PORT=str(dovecot.port),
        RIGHTSDESK_IMAP__SSL="false",
        RIGHTSDESK_IMAP__USERNAME=dovecot.user,
        RIGHTSDESK_IMAP__PASSWORD=dovecot.password,
        RIGHTSDESK_IMAP__FOLDER=folder,
        RIGHTSDESK_IMAP__PROCESSED_FOLDER=f"{folder}-done",
    )
    settings = _settings(env["RIGHTSDESK_DATABASE__URL"], workdir)
    service = Service(workdir, env)
    service.start()
    deadline = time.monotonic() + 60
    while asyncio.run(_stored(settings)) < count // 3:
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.05)
    service.kill9()
    assert asyncio.run(_stored(settings)) < count, "the kill must land mid-sweep"

    service.mark()
    service.start()
    rows = asyncio.run(_settle(settings, count))
    assert len(rows) == count
    assert len({r.message_id for r in rows}) == count
    assert all(r.ticket_id is not None for r in rows)
    assert asyncio.run(_tickets(settings)) == count
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False) as client:
        client.login(dovecot.user, dovecot.password)
        deadline = time.monotonic() + 20
        while client.select_folder(folder)[b"EXISTS"] and time.monotonic() < deadline:
            time.sleep(0.2)  # the last moves of the restarted sweep
        assert client.select_folder(folder)[b"EXISTS"] == 0
        assert client.select_folder(f"{folder}-done")[b"EXISTS"] == count
    assert service.stop() == 0


async def _stored(settings: Settings) -> int:
    desk = Desk.build(settings)
    try:
        async with desk.db.transaction() as session:
            return (
                await session.exec(
                    select(func.count(col(Message.id))).where(Message.direction == "in")
                )
            ).one()
    finally:
        await desk.close()
