"""Benchmark: `tickets search` over a large desk, on PostgreSQL.

    .venv/bin/python bench/search.py [--tickets 1000000] [--runs 40] [--dsn postgresql://...]
                                     [--keep | --reuse DATABASE]

Creates a scratch database, migrates it, and fills it inside PostgreSQL with generate_series
(one requester, contact, ticket and inbound message per ticket; a tenth with a phone; texts
drawn from Chinese and English sentences), builds the trigram indexes after the load (as the
migration does on an existing desk), ANALYZEs, then times TicketSearch.search (the whole
service call, every kind of match) for ticket ids, emails, phones, Chinese words and English
words (and two-character Chinese words, through the bigram indexes), beside a trivial query
through the same path in the same run. Target: p95 under 100 ms at 1,000,000 tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

# Run as `python bench/search.py`, this folder would come first on the path, and its
# intake.py would hide the intake package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from sqlmodel import select  # noqa: E402

from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402

SENTENCES = [
    "请删除我的全部个人信息",
    "我想查阅你们收集的关于我的购物记录",
    "请注销我的账号并删除数据",
    "我不同意你们继续发送营销短信",
    "请更正我的收货地址和手机号码",
    "我的孩子未满十四岁请删除他的信息",
    "请提供我的个人信息副本",
    "为什么你们把我的数据给了第三方合作伙伴",
    "Please delete all my personal data",
    "I want a copy of my order history",
    "Please close my account and erase everything",
    "Stop sending me marketing emails",
    "Correct the spelling of my name please",
    "Which third parties received my information",
    "I withdraw my consent for personalised advertising",
    "My late father's account should be closed",
]
CHINESE_WORDS = ["购物记录", "营销短信", "收货地址", "第三方合作伙伴", "十四岁", "注销我的账号"]
SHORT_WORDS = ["注销", "短信", "地址", "副本"]  # under a trigram: the bigram indexes
ENGLISH_WORDS = ["order history", "marketing emails", "advertising", "third parties", "spelling"]


def _migration_statements() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The trigram index statements of the migration itself (create, drop)."""
    path = Path(__file__).resolve().parent.parent / "rightsdesk/migrations/versions"
    [source] = [p for p in path.glob("*.py") if "pg_trgm" in p.read_text(encoding="utf-8")]
    spec = importlib.util.spec_from_file_location("search_migration", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._POSTGRESQL_SEARCH, module._POSTGRESQL_SEARCH_DROP


async def load(dsn: str, database: str, total: int, now: dt.datetime) -> None:
    create, drop = _migration_statements()
    conn = await asyncpg.connect(f"{dsn}/{database}")
    quoted = ("'" + s.replace("'", "''") + "'" for s in SENTENCES)
    sentences = "ARRAY[" + ", ".join(quoted) + "]"
    n = len(SENTENCES)
    try:
        started = time.perf_counter()
        for statement in drop:
            await conn.execute(statement)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute(
            "INSERT INTO requester (id, name, created_at) "
            "SELECT i, CASE WHEN i % 3 = 0 THEN '张' || i ELSE 'User ' || i END, $1 "
            "FROM generate_series(1, $2::int) AS i",
            now,
            total,
        )
        await conn.execute(
            "INSERT INTO requestercontact (requester_id, kind, value, undeliverable) "
            "SELECT i, 'email', 'user' || i || '@example.com', false "
            "FROM generate_series(1, $1::int) AS i",
            total,
        )
        await conn.execute(
            "INSERT INTO requestercontact (requester_id, kind, value, undeliverable) "
            "SELECT i, 'phone', (13800000000 + i)::text, false "
            "FROM generate_series(10, $1::int, 10) AS i",
            total,
        )
        await conn.execute(
            "INSERT INTO ticket (id, public_id, year, seq, status, channel, requester_id, "
            "contact_kind, contact_value, subject, received_at, response_due, "
            "deadlines_provisional, needs_review, audit_head, created_at, updated_at, unread, "
            "suggested_types) "
            "SELECT i, 'PRIV-2026-' || lpad(i::text, 7, '0'), 2026, i, "
            "CASE WHEN i % 30 = 0 THEN 'open' ELSE 'closed' END, 'email', i, 'email', "
            "'user' || i || '@example.com', 'Request ' || (i % 97), "
            "$1::timestamptz - (i % 900) * interval '1 day', "
            "($1::timestamptz - (i % 900) * interval '1 day')::date + 21, "
            "false, false, repeat('0', 64), $1, $1, false, '[]' "
            "FROM generate_series(1, $2::int) AS i",
            now,
            total,
        )
        await conn.execute(
            "INSERT INTO message (ticket_id, direction, channel, envelope_to, sender, subject, "
            "text, acknowledge, raw_size, parse_status, sender_authenticated, details, "
            "received_at, processed_at) "
            f"SELECT i, 'in', 'email', '[]', 'user' || i || '@example.com', 'Request', "
            f"({sentences})[1 + (i * 7) % {n}] || '。' || ({sentences})[1 + (i * 13) % {n}] || "
            "CASE WHEN i % 10 = 0 THEN ' 电话 ' || (13800000000 + i)::text ELSE '' END, "
            "false, 0, 'parsed', false, '{}', $1, $1 "
            "FROM generate_series(1, $2::int) AS i",
            now,
            total,
        )
        await conn.execute("SELECT setval('ticket_id_seq', $1)", total)
        await conn.execute("SELECT setval('requester_id_seq', $1)", total)
        loaded = time.perf_counter() - started
        for statement in create:
            await conn.execute(statement)
        await conn.execute("ANALYZE")
        indexed = time.perf_counter() - started - loaded
        print(f"loaded {total:,} tickets in {loaded:.1f}s, trigram indexes in {indexed:.1f}s")
    finally:
        await conn.close()


async def timed(runs: int, label: str, work: Callable[[int], Awaitable[int]]) -> None:
    await work(0)  # warm the plan cache
    times, found = [], []
    for run in range(runs):
        started = time.perf_counter()
        found.append(await work(run))
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    hits = statistics.median(found)
    print(f"{label:<24} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {times[-1]:7.1f} ms"
          f"   hits (median) {hits:.0f}")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the database; print its name")
    parser.add_argument("--reuse", metavar="DATABASE", help="time a database kept by --keep")
    args = parser.parse_args()
    database = args.reuse or f"rightsdesk_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{args.dsn}/postgres")
    if not args.reuse:
        await admin.execute(f'CREATE DATABASE "{database}"')
    now = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)
    url = args.dsn.replace("postgresql://", "postgresql+asyncpg://") + f"/{database}"
    desk = Desk.build(
        Settings(database={"url": url}, desk={"data_dir": "/tmp/rightsdesk-bench"}),  # type: ignore[arg-type]
        FrozenClock(now),
    )
    rng = random.Random(13)
    total = args.tickets
    try:
        if not args.reuse:
            await desk.db.migrate()
            await load(args.dsn, database, total, now)
        search = desk.search.search

        async def trivial(_: int) -> int:
            async with desk.db.reading() as session:
                return len((await session.exec(select(1))).all())

        async def by_id(_: int) -> int:
            return len(await search(f"PRIV-2026-{rng.randint(1, total):07d}"))

        async def by_email(_: int) -> int:
            return len(await search(f"user{rng.randint(1, total)}@example.com"))

        async def by_phone(_: int) -> int:
            return len(await search(str(13800000000 + 10 * rng.randint(1, total // 10))))

        async def chinese(run: int) -> int:
            return len(await search(CHINESE_WORDS[run % len(CHINESE_WORDS)]))

        async def short(run: int) -> int:
            return len(await search(SHORT_WORDS[run % len(SHORT_WORDS)]))

        async def english(run: int) -> int:
            return len(await search(ENGLISH_WORDS[run % len(ENGLISH_WORDS)]))

        await timed(args.runs, "trivial (SELECT 1)", trivial)
        await timed(args.runs, "ticket id", by_id)
        await timed(args.runs, "email", by_email)
        await timed(args.runs, "phone", by_phone)
        await timed(args.runs, "Chinese word", chinese)
        await timed(args.runs, "English word", english)
        await timed(args.runs, "2-character word", short)
    finally:
        await desk.close()
        if args.keep or args.reuse:
            print(f"kept: --reuse {database}")
        else:
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
