"""Benchmark: the DPO digest and the reminder scan over a large desk, on PostgreSQL.

    .venv/bin/python bench/digest.py [--tickets 1000000] [--active 0.03] [--dsn postgresql://...]

Creates a scratch database, loads the tickets with COPY (most of them long closed, a share
active with due dates spread around today), migrates, ANALYZEs, then times build_digest and
due_notices (best of 5 runs each). Target: under 1 s each at 1,000,000 tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import time
import uuid
from pathlib import Path

import asyncpg

# Run as `python bench/digest.py`, this folder would come first on the path, and its
# intake.py would hide the intake package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402
from scheduler.digest import build_digest  # noqa: E402
from scheduler.jobs import due_notices  # noqa: E402

TYPES = ["access", "erasure", "account_deletion", "rectification", "inquiry", "complaint"]
ACTIVE = ["new", "awaiting_verification", "open", "in_progress"]


async def load(dsn: str, database: str, total: int, active_share: float, now: dt.datetime) -> None:
    conn = await asyncpg.connect(f"{dsn}/{database}")
    try:
        requester = await conn.fetchval(
            "INSERT INTO requester (name, created_at) VALUES ('bench', $1) RETURNING id", now
        )
        rng = random.Random(7)
        tickets = []
        types = []
        for i in range(1, total + 1):
            is_active = rng.random() < active_share
            received = now - dt.timedelta(
                days=rng.randint(0, 40) if is_active else rng.randint(60, 900)
            )
            due = received.date() + dt.timedelta(days=21)
            status = rng.choice(ACTIVE) if is_active else "closed"
            kind = rng.choice(TYPES)
            completion = (
                received.date() + dt.timedelta(days=30)
                if kind in ("erasure", "account_deletion")
                else None
            )
            finished = None if is_active else received + dt.timedelta(days=10)
            tickets.append(
                (i, f"PRIV-BNCH-{i:07d}", 2026, i, status, "email", requester, "email",
                 f"user{i}@example.com", received, received, due, completion, False,
                 rng.random() < 0.1 and is_active, None if rng.random() < 0.3 else "dpo",
                 finished, finished, "0" * 64, received, received)
            )  # fmt: skip
            types.append((i, kind))
        columns = [
            "id", "public_id", "year", "seq", "status", "channel", "requester_id", "contact_kind",
            "contact_value", "received_at", "clock_started_at", "response_due", "completion_due",
            "deadlines_provisional", "needs_review", "assignee", "finished_at", "closed_at",
            "audit_head", "created_at", "updated_at",
        ]  # fmt: skip
        started = time.perf_counter()
        await conn.copy_records_to_table("ticket", records=tickets, columns=columns)
        await conn.copy_records_to_table("tickettype", records=types, columns=["ticket_id", "type"])
        await conn.execute("ANALYZE")
        print(f"loaded {total:,} tickets in {time.perf_counter() - started:.1f}s")
    finally:
        await conn.close()


async def best_of(runs: int, label: str, work: object) -> None:
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = await work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    size = len(result) if isinstance(result, list) else ""
    best, median = min(times) * 1000, sorted(times)[runs // 2] * 1000
    print(f"{label:<28} best {best:8.1f} ms   median {median:8.1f} ms  {size}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--active", type=float, default=0.03, help="share of open tickets")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    database = f"rightsdesk_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{args.dsn}/postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    now = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)  # 09:30 in Beijing, a working Monday
    url = args.dsn.replace("postgresql://", "postgresql+asyncpg://") + f"/{database}"
    desk = Desk.build(
        Settings(database={"url": url}, desk={"data_dir": "/tmp/rightsdesk-bench"}),  # type: ignore[arg-type]
        FrozenClock(now),
    )
    try:
        await desk.db.migrate()
        await load(args.dsn, database, args.tickets, args.active, now)
        today = now.astimezone(desk.policy.tz).date()
        await best_of(5, "digest (build_digest)", lambda: build_digest(desk, today))
        await best_of(5, "reminder scan (due_notices)", lambda: due_notices(desk, today))
    finally:
        await desk.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
