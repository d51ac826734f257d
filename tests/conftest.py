"""Shared fixtures: every storage test runs on SQLite and on a real PostgreSQL.

PostgreSQL is expected at 127.0.0.1:5432 (user postgres, trust auth), or wherever
RIGHTSDESK_TEST_PG_DSN points. The suite creates its own database and drops it at the end. When
the server is unreachable the PostgreSQL half is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, func, select

from classifiers.model import MODEL_DIR, RightsClassifier, model_exists
from intake.mail import mail_dedupe_key
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.config_sections import DatabaseSettings
from rightsdesk.db import Database
from rightsdesk.models import Channel, Message, Ticket
from rightsdesk.pipeline import Delivery, IntakeWorker
from rightsdesk.service import Desk

PG_DSN = os.environ.get("RIGHTSDESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
REPO = Path(__file__).resolve().parent.parent


SHARED = REPO.parent / "shared"


def corpus_files() -> list[Path]:
    """The real-world mail samples in ../shared (read-only, never copied into the repo).

    A fresh clone without ../shared skips these tests; under CI=true they must run.
    """
    folder = SHARED / "mail-corpus" / "zammad"
    files = sorted(folder.glob("*.box"))
    if not files:
        message = f"the mail corpus is not at {folder} (it lives in ../shared, next to the repo)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return files


def at(text_: str) -> dt.datetime:
    """An instant from 'YYYY-MM-DD HH:MM' in Beijing time, the way the DPO thinks of it."""
    return dt.datetime.fromisoformat(text_).replace(tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own RIGHTSDESK_* variables must not leak into what the tests build.
    for name in list(os.environ):
        if name.startswith("RIGHTSDESK_") and name != "RIGHTSDESK_TEST_PG_DSN":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_service_left_running() -> Iterator[None]:
    yield
    from tests.test_crash import Service  # only the tests that start `rightsdesk run` use it

    while Service.started:
        process = Service.started.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _pg_url(database: str) -> str:
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    db = Database(DatabaseSettings(url=url))
    try:
        await db.migrate()
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session; dropped afterwards."""
    name = f"rightsdesk_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL unreachable at {PG_DSN}: {exc}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: the PostgreSQL half of the suite must run)")
        pytest.skip(message)
    url = _pg_url(name)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("template") / "desk.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


async def _truncate_all(url: str) -> None:
    db = Database(DatabaseSettings(url=url))
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database: one test on SQLite, once more on PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "desk.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_all(url))
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database={"url": database_url},
        desk={"data_dir": tmp_path / "var"},
        outbound={"outbox_dir": tmp_path / "var" / "outbox"},
        # The pipeline's tests pin their own classifier; the model has tests of its own.
        classifier={"enabled": False},
        # Free ports: tests run side by side (pytest -n) and beside a developer's own service.
        smtp={"port": 0},
        console={"port": 0},
        portal={"port": 0},
    )


@pytest.fixture(scope="session")
def model() -> RightsClassifier:
    """The trained classifier (`make test` trains it before the suite runs)."""
    if not model_exists():
        reason = f"no trained model at {MODEL_DIR}: `make test` trains it first"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return RightsClassifier.load()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(at("2026-02-10 10:00"))


@pytest.fixture
async def desk(settings: Settings, clock: FrozenClock) -> AsyncIterator[Desk]:
    built = Desk.build(settings, clock)
    try:
        yield built
    finally:
        await built.close()


STAFF_PASSWORD = "password-for-tests-1"


async def add_staff(desk: Desk, *names: str, disabled: bool = False) -> None:
    """Console users tickets may be assigned to (a name with "@" is also its email)."""
    for name in names:
        email = name if "@" in name else f"{name}@example.com"
        await desk.staff.add(name, email, "agent", STAFF_PASSWORD)
        if disabled:
            await desk.staff.set_disabled(name)


# ---- a real IMAP server (Debian's Dovecot) ----------------------------------------------------

IMAP_USER = "privacy@example.com"
IMAP_PASSWORD = "test-secret"


@dataclasses.dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    user: str
    password: str


async def count_rows(desk: Desk, model: type[Message] | type[Ticket]) -> int:
    """How many rows: for messages, the inbound ones (our own mail is stored too)."""
    async with desk.db.transaction() as session:
        query = select(func.count()).select_from(model)
        if model is Message:
            query = query.where(Message.direction == "in")
        return (await session.exec(query)).one()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def dovecot() -> Iterator[ImapServer]:
    """Dovecot on a free loopback port, users in a passwd-file, mail in a temp folder."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        message = "Dovecot is not installed (apt-get install -y dovecot-imapd)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="rightsdesk-dovecot-"))
    root.chmod(0o755)  # the imap processes run as the dovecot user
    port = free_port()
    (root / "users").write_text(f"{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}\n", encoding="utf-8")
    (root / "mail").mkdir()
    shutil.chown(root / "mail", "dovecot", "dovecot")
    config = root / "dovecot.conf"
    config.write_text(
        f"""protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""",
        encoding="utf-8",
    )
    process = subprocess.Popen([binary, "-F", "-c", str(config)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"Dovecot did not start: {err}")
            time.sleep(0.1)
    try:
        yield ImapServer("127.0.0.1", port, IMAP_USER, IMAP_PASSWORD)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


# ---- mail for the pipeline -------------------------------------------------------------------

REQUESTER = "zhang.san@example.com"


def mail(
    body: str,
    *,
    sender: str = REQUESTER,
    message_id: str = "req-1@example.com",
    subject: str = "Request",
    headers: str = "",
    name: str = "",
) -> bytes:
    """A plain-text request to privacy@localhost; `name` (an encoded word is fine) goes before
    the address in From."""
    sender_field = f"{name} <{sender}>" if name else sender
    return (
        f"From: {sender_field}\r\nTo: privacy@localhost\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\n{headers}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body.encode()


async def deliver(desk: Desk, raw: bytes) -> int:
    accepted = await desk.inbox.accept(Delivery(Channel.EMAIL, raw, mail_dedupe_key(raw)))
    await IntakeWorker(desk.pipeline, desk.inbox).drain()
    return accepted.message_row_id
