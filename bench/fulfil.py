"""Benchmark: erasure for one user in a large company database, on PostgreSQL.

    .venv/bin/python bench/fulfil.py [--users 1000000] [--messages 10000000] [--requests 20]
                                     [--dsn postgresql://postgres@127.0.0.1:5432]

Creates two scratch databases: the company's (the test suite's collaboration product,
tests/company.py, filled with generate_series: users, their messages, meetings, files, logins,
marketing flags, newsletter), with the indexes config.example.toml's example relies on (one on
each user column), and the desk's. Then, for `--requests` random users: a verified erasure
ticket, its dry run, and `approve` (every statement of config.example.toml's chat system, in one
transaction with the ledger row); prints the time of each. Target: under 1 s per erasure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.config_systems import SystemSettings  # noqa: E402
from rightsdesk.models import RequestType  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402
from tests.company import SCHEMA, example_systems  # noqa: E402
from tests.test_fulfilment import open_ticket  # noqa: E402


def _fill(users: int, messages: int) -> list[str]:
    per_user = max(messages // users, 1)
    orgs = max(users // 1000, 1)
    return [
        f"INSERT INTO organisations SELECT g, 'org ' || g, now() FROM generate_series(1, {orgs}) g",
        f"""INSERT INTO users (id, org_id, email, phone, username, display_name, created_at,
            research_opt_in) SELECT g, 1 + g % {orgs}, 'user' || g || '@example.com',
            '+86138' || lpad(g::text, 8, '0'), 'user' || g, 'User ' || g, now(), true
            FROM generate_series(1, {users}) g""",
        f"""INSERT INTO channel_messages SELECT g, 'general-' || (g % 50),
            1 + (g - 1) % {users}, 'User ' || (1 + (g - 1) % {users}),
            'message ' || g || ' lorem ipsum dolor sit amet', now() - (g || ' seconds')::interval
            FROM generate_series(1, {users * per_user}) g""",
        f"""INSERT INTO meeting_participants SELECT m, 1 + (m * 7 + k) % {users}, 'User',
            now(), now() FROM generate_series(1, {users}) m, generate_series(0, 1) k""",
        f"""INSERT INTO file_uploads SELECT g, 1 + (g - 1) % {users}, 'file' || g || '.pdf',
            1000, 'files/' || g, now() FROM generate_series(1, {users}) g""",
        f"""INSERT INTO login_logs SELECT g, 1 + (g - 1) % {users}, '10.0.0.1', 'app/1', now()
            FROM generate_series(1, {users * 3}) g""",
        f"""INSERT INTO marketing_flags SELECT g, true, false, now()
            FROM generate_series(1, {users}) g""",
        f"""INSERT INTO newsletter_subscribers SELECT 'user' || g || '@example.com', now()
            FROM generate_series(1, {users}) g""",
    ]


async def build_company(dsn: str, name: str, users: int, messages: int) -> None:
    conn = await asyncpg.connect(f"{dsn}/{name}")
    try:
        tables = [s for s in SCHEMA if not s.startswith("CREATE INDEX")]
        indexes = [s for s in SCHEMA if s.startswith("CREATE INDEX")]
        for statement in tables:
            await conn.execute(statement)
        started = time.perf_counter()
        for statement in _fill(users, messages):
            await conn.execute(statement)
        for statement in indexes:
            await conn.execute(statement)
        await conn.execute("ANALYZE")
        count = await conn.fetchval("SELECT count(*) FROM channel_messages")
        print(
            f"company: {users:,} users, {count:,} messages, loaded and indexed in "
            f"{time.perf_counter() - started:.0f}s"
        )
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    suffix = uuid.uuid4().hex[:8]
    company, desk_db = f"bench_company_{suffix}", f"bench_desk_{suffix}"
    admin = await asyncpg.connect(f"{args.dsn}/postgres")
    for name in (company, desk_db):
        await admin.execute(f'CREATE DATABASE "{name}"')
    base = args.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        await build_company(args.dsn, company, args.users, args.messages)
        os.environ["RIGHTSDESK_SYSTEMS__CHAT__URL"] = f"{base}/{company}"
        systems = [SystemSettings(**s) for s in example_systems() if s["kind"] == "sql"]
        settings = Settings(
            database={"url": f"{base}/{desk_db}"},
            desk={"data_dir": Path("/tmp") / f"bench-fulfil-{suffix}"},
            outbound={"outbox_dir": Path("/tmp") / f"bench-fulfil-{suffix}" / "outbox"},
            classifier={"enabled": False},
            systems=systems,
        )
        desk = Desk.build(settings)
        try:
            await desk.db.migrate()
            await run_requests(desk, args)
        finally:
            await desk.close()
    finally:
        for name in (company, desk_db):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run_requests(desk: Desk, args: argparse.Namespace) -> None:
    rng = random.Random(18)
    dry: list[float] = []
    erase: list[float] = []
    for _ in range(args.requests):
        user = rng.randint(1, args.users)
        tid = await open_ticket(desk, user, [RequestType.ERASURE])
        started = time.perf_counter()
        plan = await desk.fulfilment.plan(tid)
        dry.append(time.perf_counter() - started)
        started = time.perf_counter()
        runs: list[dict[str, Any]] = await desk.fulfilment.approve(tid, plan.hash, "bench")
        erase.append(time.perf_counter() - started)
        chat = runs[0]["systems"][0]
        assert chat["status"] == "done", chat
        assert chat["rows"]["erasure.messages"] == args.messages // args.users, chat
    for label, times in (("dry run", dry), ("erasure (approve → done)", erase)):
        print(
            f"{label}: p50 {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms over {len(times)} requests"
        )
    print(f"target: erasure under 1000 ms -> {'met' if max(erase) < 1 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    asyncio.run(main(parser.parse_args()))
