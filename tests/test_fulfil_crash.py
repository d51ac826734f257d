"""kill -9 `rightsdesk fulfil --approve` in the middle of a run on PostgreSQL; run it again: the
run completes, every statement took effect exactly once, the audit chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlmodel import select

from rightsdesk.audit import verify_chains
from rightsdesk.config import load_settings
from rightsdesk.models import Event, OutboxEntry, RequestType
from rightsdesk.service import Desk
from tests.company import (
    REQUESTER,
    checksum,
    create_company,
    drop_company,
    example_systems_toml,
    owned_by,
    table_rows,
)
from tests.test_fulfilment import open_ticket

SLOW_SECONDS = 6

# Two more systems in the same company database: counters that would show any statement run
# twice, and a statement that sleeps while the test kills the runner.
MORE_SYSTEMS = """
[[systems]]
name = "analytics"
kind = "sql"
display_names = { en = "analytics" }

[[systems.erasure]]
name = "counter"
sql = "UPDATE users SET erasure_count = erasure_count + 1 WHERE id = CAST(:account_id AS BIGINT)"

[[systems]]
name = "search"
kind = "sql"
display_names = { en = "search index" }

[[systems.erasure]]
name = "counter"
sql = "UPDATE users SET erasure_count = erasure_count + 10 WHERE id = CAST(:account_id AS BIGINT)"

[[systems.erasure]]
name = "slow"
sql = \"\"\"UPDATE users SET display_name = :pseudonym WHERE id = CAST(:account_id AS BIGINT)
         AND (SELECT TRUE FROM pg_sleep((SELECT seconds FROM test_delay)))\"\"\"
"""


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _sql(url: str, statement: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        return list(await conn.fetch(statement))
    finally:
        await conn.close()


@pytest.fixture
def company(tmp_path: Path) -> Iterator[str]:
    url = asyncio.run(create_company("postgresql", tmp_path))
    asyncio.run(_sql(url, "CREATE TABLE test_delay AS SELECT 0 AS seconds"))
    try:
        yield url
    finally:
        asyncio.run(drop_company(url))


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_kill_9_during_a_run_then_the_run_completes_each_statement_once(
    database_url: str, company: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[desk]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[outbound]\noutbox_dir = "{tmp_path / "outbox"}"\n[classifier]\nenabled = false\n'
        + example_systems_toml()
        + MORE_SYSTEMS,
        encoding="utf-8",
    )
    urls = {f"RIGHTSDESK_SYSTEMS__{n}__URL": company for n in ("CHAT", "ANALYTICS", "SEARCH")}
    for name, value in urls.items():
        monkeypatch.setenv(name, value)

    async def prepare() -> tuple[str, str]:
        desk = Desk.build(load_settings(config))
        try:
            await desk.db.migrate()
            tid = await open_ticket(desk, REQUESTER, [RequestType.ERASURE])
            return tid, (await desk.fulfilment.plan(tid)).hash
        finally:
            await desk.close()

    tid, plan_hash = asyncio.run(prepare())
    before = asyncio.run(table_rows(company))
    asyncio.run(_sql(company, f"UPDATE test_delay SET seconds = {SLOW_SECONDS}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(urls)
    command = [
        sys.executable, "-m", "rightsdesk", "--config", str(config), "--actor", "cli:dpo",
        "fulfil", tid, "--approve", plan_hash,
    ]  # fmt: skip
    log = (tmp_path / "fulfil.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not asyncio.run(
        _sql(
            company,
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
        )
    ):
        assert process.poll() is None, (tmp_path / "fulfil.log").read_text()
        assert time.monotonic() < deadline, "the run never reached the slow statement"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # chat and analytics committed, search mid-transaction
    process.wait(timeout=10)
    mid = asyncio.run(_sql(company, f"SELECT erasure_count FROM users WHERE id = {REQUESTER}"))
    assert mid[0]["erasure_count"] == 1  # analytics committed; search's +10 never did

    asyncio.run(_sql(company, "UPDATE test_delay SET seconds = 0"))
    again = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()

    after = asyncio.run(table_rows(company))
    profile = next(dict(r) for r in after["users"] if owned_by("users", r, REQUESTER))
    assert profile["erasure_count"] == 11  # each counter applied exactly once
    assert checksum(after, except_user=REQUESTER) == checksum(before, except_user=REQUESTER)
    assert not [r for r in after["file_uploads"] if owned_by("file_uploads", r, REQUESTER)]
    ledger = asyncio.run(_sql(company, "SELECT step_key, counts FROM rightsdesk_ledger"))
    assert sorted(r["step_key"].rsplit("/", 1)[1] for r in ledger) == [
        "analytics",
        "chat",
        "search",
    ]

    async def check() -> None:
        desk = Desk.build(load_settings(config))
        try:
            runs = await desk.fulfilment.status(tid)
            assert len(runs) == 1
            systems = {s["system"]: s for s in runs[0]["systems"]}
            assert {n: s["status"] for n, s in systems.items()} == {
                "chat": "done",
                "recordings": "open",
                "analytics": "done",
                "search": "done",
            }
            assert systems["search"]["attempts"] == 2
            assert systems["search"]["rows"] == {"erasure.counter": 1, "erasure.slow": 1}
            assert systems["analytics"]["attempts"] == 1
            async with desk.db.reading() as session:
                assert (await verify_chains(session)).ok
                done = (
                    await session.exec(
                        select(Event).where(Event.action == "fulfilment_system_done")
                    )
                ).all()
                assert sorted(e.after["system"] for e in done) == ["analytics", "chat", "search"]
                tasks = (
                    await session.exec(
                        select(OutboxEntry).where(OutboxEntry.kind == "fulfilment_task")
                    )
                ).all()
                assert len(tasks) == 1  # the owners were asked once, not once per start
        finally:
            await desk.close()

    asyncio.run(check())
