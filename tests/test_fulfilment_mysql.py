"""Fulfilment against a company database in MySQL (MariaDB): the same collaboration product as
tests/company.py, the same `[[systems]]` example with MySQL's spelling of a numeric CAST. The
access export holds exactly the requester's rows, erasure changes exactly theirs, the dry run
changes nothing, and an approved plan run twice applies once (the ledger table in MySQL).

MariaDB at 127.0.0.1:3306 (user root, empty password; override with RIGHTSDESK_TEST_MYSQL_DSN).
Without it these tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from rightsdesk.audit import verify_chains
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.fulfilment.register import pseudonym
from rightsdesk.models import RequestType
from rightsdesk.service import Desk
from rightsdesk.signing import load_signing_key
from tests.company import (
    REQUESTER,
    ROWS,
    SCHEMA,
    USERS,
    checksum,
    email_of,
    example_systems,
    owned_by,
    secret_of,
    table_rows,
)
from tests.conftest import IN_CI
from tests.test_fulfilment import open_ticket, with_systems

MYSQL_DSN = os.environ.get("RIGHTSDESK_TEST_MYSQL_DSN", "mysql+aiomysql://root@127.0.0.1:3306/")


def mysql_schema() -> list[str]:
    """tests/company.py's schema in MySQL: a key or unique column cannot be TEXT there."""
    keyed = re.compile(r"\b(email|phone|username|ip|channel|storage_key|filename) TEXT\b")
    schema = []
    for statement in SCHEMA:
        statement = keyed.sub(r"\1 VARCHAR(255)", statement)
        schema.append(statement.replace("TEXT PRIMARY KEY", "VARCHAR(255) PRIMARY KEY"))
    return schema


def mysql_systems() -> list[dict[str, Any]]:
    """The example systems with MySQL's numeric CAST (it has no `AS BIGINT`)."""
    spelled = json.dumps(example_systems()).replace("AS BIGINT)", "AS SIGNED)")
    systems: list[dict[str, Any]] = json.loads(spelled)
    return systems


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The desk itself on SQLite: what is under test is the company's database in MySQL."""
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "desk.db"
    path.write_bytes(template.read_bytes())
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def company(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    name = f"company_{uuid.uuid4().hex[:10]}"
    server = make_url(MYSQL_DSN)
    admin = create_async_engine(server)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except Exception as exc:  # no server, no driver: a clear skip (a failure in CI)
        await admin.dispose()
        message = f"MySQL/MariaDB not reachable at {MYSQL_DSN}: {type(exc).__name__}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: the MySQL fulfilment tests must run)")
        pytest.skip(message)
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in mysql_schema():
                await conn.execute(text(statement))
            for table, rows in ROWS.items():
                columns = list(rows[0])
                await conn.execute(
                    text(
                        f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join(':' + c for c in columns)})"
                    ),
                    rows,
                )
        await engine.dispose()
        monkeypatch.setenv("RIGHTSDESK_SYSTEMS__CHAT__URL", url)
        yield url
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


@pytest.fixture
async def mdesk(settings: Settings, clock: FrozenClock, company: str) -> AsyncIterator[Desk]:
    desk = Desk.build(with_systems(settings, mysql_systems()), clock)
    try:
        yield desk
    finally:
        await desk.close()


async def test_mysql_access_export_holds_exactly_the_requesters_rows(
    mdesk: Desk, company: str
) -> None:
    tid = await open_ticket(mdesk, REQUESTER, [RequestType.ACCESS])
    before = await table_rows(company)
    plan = await mdesk.fulfilment.plan(tid)
    mine = {t: [r for r in rows if owned_by(t, r, REQUESTER)] for t, rows in before.items()}
    counted = {p.name: p.rows for s in plan.systems for p in s.statements}
    assert counted["messages"] == len(mine["channel_messages"])
    assert counted["files"] == len(mine["file_uploads"])
    await mdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    export = await mdesk.fulfilment.export(tid)
    dumped = json.dumps(export, ensure_ascii=False, default=str)
    assert secret_of(REQUESTER) in dumped
    for other in USERS:
        if other != REQUESTER:
            assert secret_of(other) not in dumped
            assert email_of(other) not in dumped
    sections = export["systems"]["chat"]["sections"]
    assert {r["Text"] for r in sections["messages"]["rows"]} == {
        dict(r)["body"] for r in mine["channel_messages"]
    }
    assert await table_rows(company) == before


async def test_mysql_erasure_changes_exactly_the_requesters_rows_once(
    mdesk: Desk, company: str
) -> None:
    tid = await open_ticket(mdesk, REQUESTER, [RequestType.ERASURE])
    before = await table_rows(company)
    plan = await mdesk.fulfilment.plan(tid)
    assert await table_rows(company) == before, "the dry run changed the company's data"
    await mdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    after = await table_rows(company)
    assert checksum(after, except_user=REQUESTER) == checksum(before, except_user=REQUESTER)
    alias = pseudonym(load_signing_key(mdesk.settings), str(REQUESTER))
    messages = [
        dict(r) for r in after["channel_messages"] if owned_by("channel_messages", r, REQUESTER)
    ]
    assert messages
    assert all(m["body"] is None and m["author_name"] == alias for m in messages)
    for table in ("file_uploads", "login_logs", "newsletter_subscribers"):
        assert not [r for r in after[table] if owned_by(table, r, REQUESTER)], table
    assert secret_of(REQUESTER) not in repr(after)
    # the ledger lives in MySQL too: approving again applies nothing again
    await mdesk.fulfilment.approve(tid, plan.hash, "cli:dpo")
    assert await table_rows(company) == after
    async with mdesk.db.reading() as session:
        assert (await verify_chains(session)).ok
