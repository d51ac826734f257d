"""Benchmark: `tickets search` over a large desk, on PostgreSQL.

    .venv/bin/python bench/search.py [--tickets 1000000] [--runs 40] [--dsn postgresql://...]
                                     [--keep | --reuse DATABASE]

Creates a scratch database, migrates it and fills it (bench/pg_fixture.py: generate_series
inside PostgreSQL, the trigram indexes built after the load), then times TicketSearch.search
(the whole service call, every kind of match) for ticket ids, emails, phones, Chinese words and
English words (and two-character Chinese words, through the bigram indexes), beside a trivial
query through the same path in the same run. Target: p95 under 100 ms at 1,000,000 tickets.
A database kept by bench/console.py --keep serves here too (the same loader).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# Run as `python bench/search.py`, this folder would come first on the path, and its
# intake.py would hide the intake package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from sqlmodel import select  # noqa: E402

from bench import pg_fixture  # noqa: E402
from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402

CHINESE_WORDS = ["购物记录", "营销短信", "收货地址", "第三方合作伙伴", "十四岁", "注销我的账号"]
SHORT_WORDS = ["注销", "短信", "地址", "副本"]  # under a trigram: the bigram indexes
ENGLISH_WORDS = ["order history", "marketing emails", "advertising", "third parties", "spelling"]


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
    parser.add_argument("--runs", type=int, default=40)
    pg_fixture.add_arguments(parser, "bench_search")
    args = parser.parse_args()
    scratch = await pg_fixture.open_scratch(args)
    desk = Desk.build(
        Settings(database={"url": scratch.url}, desk={"data_dir": "/tmp/rightsdesk-bench"}),  # type: ignore[arg-type]
        FrozenClock(pg_fixture.NOW),
    )
    rng = random.Random(13)
    total = args.tickets
    try:
        await desk.db.migrate()
        if scratch.fresh:
            await pg_fixture.load(scratch, total)
        elif (loaded := await pg_fixture.loaded_tickets(scratch)) < total:
            raise SystemExit(f"{scratch.name} holds {loaded:,} tickets: --tickets {loaded}")
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
        await pg_fixture.close_scratch(scratch)


if __name__ == "__main__":
    asyncio.run(main())
