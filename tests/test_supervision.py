"""The service looks after itself: a full disk or a dead database delays work, never loses it;
a failing task is logged, restarted and shown; a sender killed mid-send leaves no claim to wait
out. Real conditions: a tiny tmpfs that fills up, a backend terminated by PostgreSQL, kill -9.
Both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import update
from sqlmodel import col, select
from typer.testing import CliRunner

from intake.mail import mail_dedupe_key
from rightsdesk.cli import app
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, Message, OutboxEntry, TaskHeartbeat
from rightsdesk.pipeline import Delivery, IntakeWorker
from rightsdesk.sending import _write_eml
from rightsdesk.service import Desk, run_service
from rightsdesk.supervision import read_heartbeats
from rightsdesk.transient import is_transient
from scheduler.digest import build_digest, render_digest
from tests.conftest import PG_DSN, deliver, free_port, mail
from tests.test_crash import Service

runner = CliRunner()


# ---- a disk that fills up ----------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of our own (we run as root), to fill up and free again."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Take every free block of the file system `folder` is on; delete the file to free them."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return filler


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def entries(desk: Desk) -> list[OutboxEntry]:
    async with desk.db.reading() as session:
        return list((await session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id)))).all())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- item 3: the sender on a full disk ---------------------------------------------------------


async def test_a_full_outbox_folder_delays_mail_and_loses_none(
    settings: Settings, clock: FrozenClock, tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tiny_disk / "outbox"
    outbox.mkdir()
    settings.outbound.outbox_dir = outbox
    desk = Desk.build(settings, clock)
    stop = asyncio.Event()
    sender = desk.supervisor.task("outbound-sender", desk.sender.run, stop)
    try:
        filler = fill(tiny_disk)
        caplog.set_level(logging.WARNING, "rightsdesk")
        for n in range(12):
            await deliver(desk, mail("请删除", sender=f"u{n}@example.com", message_id=f"m{n}@x"))

        async def all_tried() -> bool:
            found = await entries(desk)
            return len(found) == 12 and all(e.attempts >= 1 for e in found)

        await until(all_tried)
        found = await entries(desk)
        assert {e.status for e in found} == {"pending"}
        assert all("[Errno 28]" in (e.last_error or "") for e in found)
        assert all(e.claimed_by is None for e in found)  # backing off, not held
        assert "will be retried" in caplog.text  # logged at once, not at SIGTERM
        assert leftovers(outbox) == []  # no 0-byte .tmp left behind
        assert not sender.done()  # the sender lives on
        assert desk.supervisor.states["outbound-sender"].state == "up"

        filler.unlink()  # space comes back
        clock.advance(dt.timedelta(minutes=1))  # the first back-off (30 s) has passed
        desk.outbox.enqueued["email"].set()

        async def all_sent() -> bool:
            return {e.status for e in await entries(desk)} == {"sent"}

        await until(all_sent)
        assert sorted(p.name for p in outbox.glob("*.eml")) == [
            f"{e.id:08d}.eml" for e in await entries(desk)
        ]
        assert leftovers(outbox) == []
    finally:
        stop.set()
        await sender
        await desk.close()


def test_an_eml_file_is_written_once(tmp_path: Path) -> None:
    _write_eml(tmp_path, 7, b"first")
    written = (tmp_path / "00000007.eml").stat()
    _write_eml(tmp_path, 7, b"first")  # sent again after a crash between the file and the mark
    again = (tmp_path / "00000007.eml").stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert [p.name for p in tmp_path.iterdir()] == ["00000007.eml"]


# ---- item 3: a task that keeps failing -----------------------------------------------------------


async def test_a_failing_task_is_logged_restarted_and_shown(
    settings: Settings, tiny_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings.service.restart_min_seconds = 0.05
    settings.service.restart_max_seconds = 0.2
    desk = Desk.build(settings)  # the wall clock: `status` compares heartbeats with it
    caplog.set_level(logging.ERROR, "rightsdesk.supervision")
    filler = fill(tiny_disk)
    runs = 0

    async def spooler(stop: asyncio.Event) -> None:  # writes to the disk, as the sender did
        nonlocal runs
        runs += 1
        (tiny_disk / "spool").write_bytes(b"x" * 65536)
        await stop.wait()

    stop = asyncio.Event()
    task = desk.supervisor.task("spooler", spooler, stop)
    try:

        async def failing() -> bool:
            return desk.supervisor.states.get("spooler") is not None and (
                desk.supervisor.states["spooler"].state == "failing"
            )

        await until(failing)
        assert (
            "task spooler failed (1 in a row): OSError [Errno 28] No space left on device"
            in caplog.text
        )
        [row] = [r for r in await read_heartbeats(desk.db) if r.task == "spooler"]
        assert row.state == "failing"
        assert row.failures >= 3
        assert row.failing_since is not None
        assert row.last_error == "OSError [Errno 28] No space left on device"

        # Where the DPO and the operator see it: `rightsdesk status` and the digest.
        config = tmp_path / "status.toml"
        config.write_text(
            f'[database]\nurl = "{settings.database.url}"\n'
            f'[desk]\ndata_dir = "{settings.desk.data_dir}"\n',
            "utf-8",
        )
        result = await asyncio.to_thread(
            runner.invoke, app, ["--config", str(config), "status", "--json"]
        )
        assert result.exit_code == 0, result.stderr
        [shown] = [t for t in json.loads(result.stdout)["tasks"] if t["task"] == "spooler"]
        assert shown["state"] == "failing"
        assert shown["failing_since"]
        table = await asyncio.to_thread(runner.invoke, app, ["--config", str(config), "status"])
        assert "spooler" in table.stdout
        assert "failing" in table.stdout
        built = await build_digest(desk, desk.tickets.today())
        _, text, html = render_digest(built, desk.outbox.templates)
        assert "Service problems" in text
        assert "spooler: failing" in text
        assert "spooler: failing" in html

        filler.unlink()

        async def up() -> bool:
            spool = tiny_disk / "spool"
            return spool.exists() and spool.stat().st_size == 65536  # written: running well

        await until(up)
        runs_when_well = runs
        await asyncio.sleep(0.5)
        assert runs == runs_when_well  # well again: no more restarts
        assert desk.supervisor.states["spooler"].state == "up"
    finally:
        stop.set()
        await task
        await desk.close()
    assert desk.supervisor.states["spooler"].state == "stopped"


# ---- `rightsdesk status` against the running service ------------------------------------------


async def test_status_shows_what_the_running_service_is_doing(
    settings: Settings, tmp_path: Path
) -> None:
    settings.smtp.port = 0
    settings.outbound.outbox_dir = tmp_path / "outbox"
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(settings, stop))
    desk = Desk.build(settings)
    try:

        async def reported() -> bool:
            tasks = {r.task: r.state for r in await read_heartbeats(desk.db)}
            return {"smtp", "intake-worker", "outbound-sender", "scheduler"} <= set(tasks)

        await until(reported, 60)
        await desk.inbox.accept(Delivery(Channel.EMAIL, b"x", "status-test"))  # unparseable
        config = tmp_path / "status.toml"
        config.write_text(
            f'[database]\nurl = "{settings.database.url}"\n'
            f'[desk]\ndata_dir = "{settings.desk.data_dir}"\n',
            "utf-8",
        )

        async def routed() -> bool:
            async with desk.db.reading() as session:
                row = (
                    await session.exec(select(Message).where(Message.dedupe_key == "status-test"))
                ).one()
            return row.parse_status != "stored"

        await until(routed)
        result = await asyncio.to_thread(
            runner.invoke, app, ["--config", str(config), "status", "--json"]
        )
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        states = {t["task"]: t["state"] for t in data["tasks"]}
        for task in ("smtp", "intake-worker", "outbound-sender", "scheduler", "classifier"):
            assert states[task] == "up", (task, states)
        [smtp] = [t for t in data["tasks"] if t["task"] == "smtp"]
        assert smtp["detail"].startswith("127.0.0.1:")
        assert set(data["queues"]) >= {
            "stored_not_routed",
            "outbox_pending",
            "outbox_failed",
            "intake_failed",
        }
        assert data["queues"]["intake_failed"] == 1  # the unparseable one, after 3 tries
        assert data["model"] == "none: every request goes to triage"
        assert "last_digest" in data  # today's, if the wall clock is past 09:00 on a working day
    finally:
        stop.set()
        await service
        await desk.close()
    rows = await _heartbeats_after(settings)
    assert {r.state for r in rows} == {"stopped"}


async def _heartbeats_after(settings: Settings) -> list[TaskHeartbeat]:
    desk = Desk.build(settings)
    try:
        return await read_heartbeats(desk.db)
    finally:
        await desk.close()


# ---- item 8: claims of a sender that is gone -------------------------------------------------


async def test_claims_of_a_dead_sender_are_released_those_of_a_live_one_kept(
    desk: Desk, clock: FrozenClock
) -> None:
    for n in range(3):
        await deliver(desk, mail("请删除", sender=f"c{n}@example.com", message_id=f"c{n}@x"))
    first, second, third = (e.id for e in await entries(desk))
    now = clock.now()
    lease = now + dt.timedelta(minutes=5)
    owners = {first: desk.supervisor.replica, second: "replica-b", third: "replica-c"}
    async with desk.db.transaction() as session:
        for entry_id, owner in owners.items():
            await session.exec(
                update(OutboxEntry)
                .where(col(OutboxEntry.id) == entry_id)
                .values(claimed_by=owner, next_attempt_at=lease)
            )
        for replica, beat in (("replica-b", now), ("replica-c", now - dt.timedelta(hours=1))):
            session.add(
                TaskHeartbeat(
                    replica=replica, task="outbound-sender", state="up", since=beat, beat_at=beat
                )
            )
    # This replica starting: its own predecessor is dead, and so is replica-c.
    assert await desk.supervisor.release_stale_claims() == 2
    assert await desk.sender.send_due() == 2
    by_id = {e.id: e for e in await entries(desk)}
    assert by_id[first].status == by_id[third].status == "sent"
    assert (by_id[second].status, by_id[second].claimed_by) == ("pending", "replica-b")


class StallingRelay:
    """Accepts connections and never says a word: a sender is stuck mid-send on it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


async def _claims(settings: Settings) -> list[tuple[int, str | None, str]]:
    desk = Desk.build(settings)
    try:
        return [(e.id or 0, e.claimed_by, e.status) for e in await entries(desk)]
    finally:
        await desk.close()


def test_after_kill_9_the_acknowledgement_goes_out_at_once(
    database_url: str, tmp_path: Path
) -> None:
    relay = StallingRelay()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(
        RIGHTSDESK_DATABASE__URL=database_url,
        RIGHTSDESK_SMTP__PORT=str(port),
        RIGHTSDESK_DESK__DATA_DIR=str(tmp_path / "var"),
        RIGHTSDESK_OUTBOUND__OUTBOX_DIR=str(tmp_path / "outbox"),
        RIGHTSDESK_OUTBOUND__RELAY_HOST="127.0.0.1",
        RIGHTSDESK_OUTBOUND__RELAY_PORT=str(relay.port),
        RIGHTSDESK_OUTBOUND__RELAY_STARTTLS="false",
        RIGHTSDESK_CLASSIFIER__ENABLED="false",
        RIGHTSDESK_SCHEDULER__ENABLED="false",
    )
    settings = Settings(database={"url": database_url}, desk={"data_dir": tmp_path / "var"})
    service = Service(tmp_path, env)
    service.mark()
    service.start()
    try:
        import smtplib

        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.com", ["privacy@localhost"], mail("请删除我的数据"))
        deadline = time.monotonic() + 30
        while not any(owner for _, owner, _ in asyncio.run(_claims(settings))):
            assert time.monotonic() < deadline, "the sender never claimed the acknowledgement"
            time.sleep(0.1)
        service.kill9()  # mid-send: the claim (a 5-minute lease) stays behind
        [(entry_id, owner, status)] = asyncio.run(_claims(settings))
        assert (owner, status) == (service_replica(), "pending")

        # Back up, now writing .eml files: the dead sender's claim is released at start-up.
        env["RIGHTSDESK_OUTBOUND__RELAY_HOST"] = ""
        service.mark()
        started = time.monotonic()
        service.start()
        eml = tmp_path / "outbox" / f"{entry_id:08d}.eml"
        while not eml.exists():
            assert time.monotonic() - started < 60, "the acknowledgement waited for the lease"
            time.sleep(0.1)
        assert service.stop() == 0
        [(_, owner, status)] = asyncio.run(_claims(settings))
        assert (owner, status) == (None, "sent")
        assert "released 1 outbox claim" in (tmp_path / "service.log").read_text()
    finally:
        relay.close()
        if service.process is not None and service.process.poll() is None:
            service.process.kill()


def service_replica() -> str:
    return socket.gethostname()


# ---- item 6: transient routing failures ------------------------------------------------------


async def _terminate_blocked_backend(database: str) -> None:
    """Wait for a backend of ours to block on a lock, then have PostgreSQL terminate it."""
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        for _ in range(200):
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 "
                "AND wait_event_type = 'Lock' LIMIT 1",
                database,
            )
            if pid:
                assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
                return
            await asyncio.sleep(0.05)
        raise AssertionError("routing never blocked on the lock")
    finally:
        await conn.close()


async def test_a_transient_failure_while_routing_is_retried_not_parked(
    settings: Settings, clock: FrozenClock, tiny_disk: Path
) -> None:
    """SQLite: the disk fills up under the database. PostgreSQL: the routing transaction's
    connection is terminated by the server. Either way the message stays stored, is retried
    with back-off, and is routed once the trouble is over; nothing lands in intake failed."""
    if settings.database.url.startswith("sqlite"):
        source = Path(settings.database.url.split("///", 1)[1])
        shutil.copyfile(source, tiny_disk / "desk.db")
        settings.database.url = f"sqlite+aiosqlite:///{tiny_disk / 'desk.db'}"
    desk = Desk.build(settings, clock)
    raw = mail("请删除我的数据")
    accepted = await desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw)))
    worker = IntakeWorker(desk.pipeline, desk.inbox, poll_seconds=0.2)
    stop = asyncio.Event()
    release: Callable[[], Awaitable[None]]
    if desk.db.is_sqlite:
        import sqlite3

        with sqlite3.connect(tiny_disk / "desk.db") as conn:  # every later write must grow
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(tiny_disk)

        async def free() -> None:
            filler.unlink()

        release = free
        running = asyncio.create_task(worker.run(stop))
    else:
        database = settings.database.url.rsplit("/", 1)[1]
        blocker: Any = await asyncpg.connect(f"{PG_DSN.rsplit('/', 1)[0]}/{database}")
        locking = blocker.transaction()
        await locking.start()
        await blocker.execute("LOCK TABLE ticketcounter IN ACCESS EXCLUSIVE MODE")
        running = asyncio.create_task(worker.run(stop))
        await _terminate_blocked_backend(database)

        async def unlock() -> None:
            await locking.rollback()
            await blocker.close()

        release = unlock
    try:

        async def deferred() -> bool:
            return worker.deferred == 1

        await until(deferred)
        row = await _message(desk, accepted.message_row_id)
        assert row.parse_status == "stored"  # not parked for a person
        assert await desk.pipeline.problems() == []
        await release()

        async def routed() -> bool:
            return (await _message(desk, accepted.message_row_id)).parse_status == "parsed"

        await until(routed, 30)
        assert worker.deferred == 0
        assert len(await desk.tickets.find()) == 1
    finally:
        stop.set()
        await running
        await desk.close()


async def _message(desk: Desk, row_id: int) -> Message:
    async with desk.db.reading() as session:
        return await session.get_one(Message, row_id)


def test_what_counts_as_transient() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    def wrapped(orig: Exception) -> OperationalError:
        return OperationalError("INSERT ...", {}, orig)

    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert is_transient(wrapped(sqlite3.OperationalError("database is locked")))
    assert is_transient(wrapped(sqlite3.OperationalError("database or disk is full")))
    assert is_transient(ConnectionResetError())
    # A bug is not: the same message would fail the same way next time.
    assert not is_transient(wrapped(sqlite3.OperationalError("no such column: foo")))
    assert not is_transient(ValueError("no sender address to answer"))
    assert not is_transient(OSError(errno.ENOENT, "No such file or directory"))
