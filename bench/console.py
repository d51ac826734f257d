"""Benchmark: the console's pages over a large desk on PostgreSQL, with concurrent clients.

    .venv/bin/python bench/console.py [--tickets 1000000] [--clients 20] [--requests 30]
                                      [--database NAME [--keep]]

Fills a scratch database inside PostgreSQL with generate_series (one requester, contact,
ticket, type and inbound message per ticket; 3 % active with due dates around today, the rest
long closed; a tenth with a phone; texts drawn from Chinese and English sentences), builds the
search's trigram indexes after the load, ANALYZEs, starts `rightsdesk run` on it as its own
process (console only), logs in, then has N concurrent clients fetch each route in turn and
prints p50/p95 per route, beside /healthz (a route that touches no database or template) in
the same run. Target: p95 under 150 ms for each page and within 5x of the trivial route.

With `--database NAME` the database is kept (`--keep` implied) and reused by the next run with
the same name and ticket count: loading and indexing 1,000,000 tickets takes minutes. Each run
migrates it first, so a new migration's indexes are built on the loaded rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # run as a script, this folder would hide the intake package

from bench.search import SENTENCES, _migration_statements  # noqa: E402
from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.models import Channel, RequestType  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402
from rightsdesk.tickets import Contact, NewTicket  # noqa: E402

TYPES = ["access", "erasure", "account_deletion", "rectification", "inquiry", "complaint"]
ACTIVE = ["new", "awaiting_verification", "open", "in_progress"]


async def load(dsn: str, database: str, total: int, now: dt.datetime) -> None:
    """The desk, filled inside PostgreSQL. `h(k)` is a per-ticket hash in 0..999 (salted by
    k), so every run builds the same desk."""
    create, drop = _migration_statements()
    conn = await asyncpg.connect(f"{dsn}/{database}")
    quoted = ("'" + s.replace("'", "''") + "'" for s in SENTENCES)
    sentences = "ARRAY[" + ", ".join(quoted) + "]"
    n = len(SENTENCES)
    types = "ARRAY[" + ", ".join(f"'{t}'" for t in TYPES) + "]"
    active = "ARRAY[" + ", ".join(f"'{s}'" for s in ACTIVE) + "]"

    def h(k: int) -> str:
        return f"(abs(hashint4(i * 7 + {k})) % 1000)"

    is_active = f"{h(1)} < 30"
    days_ago = f"(CASE WHEN {is_active} THEN {h(2)} % 40 ELSE 60 + {h(2)} * 84 / 100 END)"
    received = f"($1::timestamptz - {days_ago} * interval '1 day' - {h(3)} * interval '1 minute')"
    kind = f"({types})[1 + {h(4)} % {len(TYPES)}]"
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
            "contact_kind, contact_value, subject, received_at, clock_started_at, response_due, "
            "completion_due, deadlines_provisional, needs_review, assignee, finished_at, "
            "closed_at, audit_head, created_at, updated_at, unread, suggested_types) "
            "SELECT i, 'PRIV-2026-' || lpad(i::text, 7, '0'), 2026, i, "
            f"CASE WHEN {is_active} THEN ({active})[1 + {h(5)} % 4] ELSE 'closed' END, "
            "'email', i, 'email', 'user' || i || '@example.com', 'Request ' || (i % 97), "
            f"{received}, {received}, ({received})::date + 21, "
            f"CASE WHEN {kind} IN ('erasure', 'account_deletion') "
            f"THEN ({received})::date + 30 END, false, "
            f"{is_active} AND {h(6)} < 100, CASE WHEN {h(7)} < 300 THEN NULL ELSE 'dpo' END, "
            f"CASE WHEN {is_active} THEN NULL ELSE {received} + interval '10 days' END, "
            f"CASE WHEN {is_active} THEN NULL ELSE {received} + interval '10 days' END, "
            f"repeat('0', 64), {received}, {received}, {is_active} AND {h(8)} < 50, '[]' "
            "FROM generate_series(1, $2::int) AS i",
            now,
            total,
        )
        await conn.execute(
            f"INSERT INTO tickettype (ticket_id, type) SELECT i, {kind} "
            "FROM generate_series(1, $1::int) AS i",
            total,
        )
        await conn.execute(
            "INSERT INTO message (ticket_id, direction, channel, envelope_to, sender, subject, "
            "text, acknowledge, raw_size, parse_status, sender_authenticated, details, "
            "received_at, processed_at) "
            "SELECT i, 'in', 'email', '[]', 'user' || i || '@example.com', 'Request', "
            f"({sentences})[1 + (i * 7) % {n}] || '。' || ({sentences})[1 + (i * 13) % {n}] || "
            "CASE WHEN i % 10 = 0 THEN ' 电话 ' || (13800000000 + i)::text ELSE '' END, "
            "false, 0, 'parsed', false, '{}', $1, $1 "
            "FROM generate_series(1, $2::int) AS i",
            now,
            total,
        )
        await conn.execute("SELECT setval('ticket_id_seq', $1)", total)
        await conn.execute("SELECT setval('requester_id_seq', $1)", total)
        await conn.execute(
            "INSERT INTO ticketcounter (year, last_seq) VALUES (2026, $1)"
            " ON CONFLICT (year) DO UPDATE SET last_seq = $1",
            total,
        )
        loaded = time.perf_counter() - started
        for statement in create:
            await conn.execute(statement)
        await conn.execute("ANALYZE")
        indexed = time.perf_counter() - started - loaded
        print(f"loaded {total:,} tickets in {loaded:.1f}s, trigram indexes in {indexed:.1f}s")
    finally:
        await conn.close()


PASSWORD = "bench-password-1"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def login(client: httpx.AsyncClient) -> None:
    form = await client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None
    done = await client.post(
        "/login", data={"login_csrf": token.group(1), "name": "bench", "password": PASSWORD}
    )
    assert done.status_code == 303, done.text


async def hammer(
    url: str, routes: dict[str, str], clients: int, requests: int
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in routes}
    sessions = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(clients)]
    try:
        await asyncio.gather(*(login(s) for s in sessions))
        for s in sessions:  # warm every route once
            for path in routes.values():
                (await s.get(path)).raise_for_status()

        async def client(session: httpx.AsyncClient, offset: int) -> None:
            names = list(routes)
            for i in range(requests * len(names)):
                name = names[(i + offset) % len(names)]  # every client cycles through the routes
                started = time.perf_counter()
                response = await session.get(routes[name])
                timings[name].append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(client(s, k) for k, s in enumerate(sessions)))
    finally:
        for s in sessions:
            await s.aclose()
    return timings


async def prepare(args: argparse.Namespace, url: str, now: dt.datetime) -> str:
    """Create (or reuse) and fill the database; returns the public id of a ticket with a real
    history (the loaded ones have none) for the ticket page."""
    admin = await asyncpg.connect(f"{args.dsn}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.database)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{args.database}"')
    finally:
        await admin.close()
    settings = Settings(database={"url": url}, desk={"data_dir": args.workdir / "var"})  # type: ignore[arg-type]
    desk = Desk.build(settings, FrozenClock(now))
    try:
        started = time.perf_counter()
        await desk.db.migrate()
        print(f"migrated in {time.perf_counter() - started:.1f}s")
        conn = await asyncpg.connect(f"{args.dsn}/{args.database}")
        try:
            loaded = await conn.fetchval("SELECT count(*) FROM requester")
            ready = await conn.fetchval(
                "SELECT public_id FROM ticket WHERE contact_value = 'zhang@example.com'"
            )
        finally:
            await conn.close()
        if loaded == 0:
            await load(args.dsn, args.database, args.tickets, now)
        elif loaded < args.tickets:
            raise SystemExit(f"{args.database} holds {loaded:,} tickets, not {args.tickets:,}")
        if not any(u.name == "bench" for u in await desk.staff.everyone()):
            await desk.staff.add("bench", "bench@example.com", "dpo", PASSWORD, "en")
        if ready is not None:
            return str(ready)
        opened = await desk.tickets.open(
            NewTicket(Channel.EMAIL, Contact.email("zhang@example.com"), [RequestType.ERASURE],
                      now, subject="请删除我的账号", text="请删除我的账号和全部数据。" * 20)
        )  # fmt: skip
        await desk.tickets.assign(opened.public_id, "console:bench", "bench")
        await desk.tickets.mark_verified(opened.public_id, "console:bench", "checked")
        await desk.tickets.start(opened.public_id, "console:bench")
        return opened.public_id
    finally:
        await desk.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30, help="per client and route")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=18631)
    parser.add_argument("--database", help="keep this database and reuse it next time")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--load-only", action="store_true", help="fill the database and stop")
    parser.add_argument("--no-search", action="store_true", help="leave the search routes out")
    args = parser.parse_args()
    keep = args.keep or args.database is not None
    args.database = args.database or f"rightsdesk_bench_{uuid.uuid4().hex[:8]}"
    args.workdir = Path(tempfile.mkdtemp(prefix="rightsdesk-bench-console-"))
    # The loaded desk's "now": fixed, so a reused database has the same share overdue.
    now = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
    url = args.dsn.replace("postgresql://", "postgresql+asyncpg://") + f"/{args.database}"
    service: subprocess.Popen[bytes] | None = None
    try:
        public_id = await prepare(args, url, now)
        if args.load_only:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
        env.update(
            RIGHTSDESK_DATABASE__URL=url,
            RIGHTSDESK_DATABASE__POOL_SIZE="20",
            RIGHTSDESK_SMTP__ENABLED="false",
            RIGHTSDESK_SCHEDULER__ENABLED="false",
            RIGHTSDESK_CLASSIFIER__ENABLED="false",
            RIGHTSDESK_CONSOLE__PORT=str(args.port),
            RIGHTSDESK_CONSOLE__LOGIN_MAX_FAILURES="1000",
            RIGHTSDESK_LOGGING__LEVEL="WARNING",
            RIGHTSDESK_DESK__DATA_DIR=str(args.workdir / "var"),
        )
        log = (args.workdir / "service.log").open("wb")
        service = subprocess.Popen(  # noqa: ASYNC220  (the benchmark's own server, once)
            [sys.executable, "-m", "rightsdesk", "run"], cwd=args.workdir, env=env, stderr=log
        )
        base = f"http://127.0.0.1:{args.port}"
        async with httpx.AsyncClient() as probe:
            for _ in range(300):
                try:
                    if (await probe.get(base + "/healthz", timeout=2)).text == "ok":
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        routes = {
            "trivial (/healthz)": "/healthz",
            "queue page (all)": "/",
            "queue page (overdue)": "/?queue=overdue",
            "queue page (type filter, p.3)": "/?type=erasure&page=3",
            "ticket page": f"/tickets/{public_id}",
            "search (email)": "/?q=user4242@example.com",
            "search (Chinese word)": "/?q=营销短信",
        }
        if args.no_search:
            routes = {k: v for k, v in routes.items() if not k.startswith("search")}
        timings = await hammer(base, routes, args.clients, args.requests)
        trivial = percentile(timings["trivial (/healthz)"], 0.95)
        print(f"{args.tickets:,} tickets, {args.clients} concurrent clients, PostgreSQL")
        for name, values in timings.items():
            p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
            ratio = percentile(values, 0.95) / trivial if trivial else 0
            print(f"{name:<32} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   {ratio:5.1f}x trivial p95")
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        if not keep:
            admin = await asyncpg.connect(f"{args.dsn}/postgres")
            await admin.execute(f'DROP DATABASE "{args.database}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
