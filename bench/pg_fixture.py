"""A large desk inside PostgreSQL, for the benchmarks that need one (bench/search.py,
bench/console.py): one loader, one way to keep and reuse the database.

The desk is filled with generate_series, inside PostgreSQL: one requester, contact, ticket, type
and inbound message per ticket; 3 % active with due dates around NOW, the rest long closed; a
tenth with a phone; texts drawn from Chinese and English sentences. `h(k)` below is a
per-ticket hash in 0..999 (salted by k), so every load builds the same desk. The search's
trigram indexes are built after the load (as the migration does on an existing desk), then
everything is ANALYZEd.

Loading and indexing 1,000,000 tickets takes minutes: `--keep` leaves the database in place
and prints its name, `--reuse NAME` times it again (each bench migrates it first, so a new
migration's indexes are built on the loaded rows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent

# The loaded desk's "now": fixed, so a reused database has the same share overdue.
NOW = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)

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
TYPES = ["access", "erasure", "account_deletion", "rectification", "inquiry", "complaint"]
ACTIVE = ["new", "awaiting_verification", "open", "in_progress"]


@dataclass(frozen=True)
class Scratch:
    """The benchmark's database: its name, whether it must be loaded, whether to keep it."""

    dsn: str  # the server, without a database
    name: str
    fresh: bool  # created now: migrate and load it
    keep: bool

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the desk is configured with."""
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://") + f"/{self.name}"


def add_arguments(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the database; print its name")
    parser.add_argument("--reuse", metavar="DATABASE", help="time a database kept by --keep")
    parser.set_defaults(db_prefix=prefix)


async def open_scratch(args: argparse.Namespace) -> Scratch:
    """The database named by --reuse (it must exist), else a new one named after the bench."""
    admin = await asyncpg.connect(f"{args.dsn}/postgres")
    try:
        if args.reuse:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.reuse):
                raise SystemExit(f"no database {args.reuse!r} to reuse")
            return Scratch(args.dsn, args.reuse, fresh=False, keep=True)
        name = f"{args.db_prefix}_{uuid.uuid4().hex[:8]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        return Scratch(args.dsn, name, fresh=True, keep=args.keep)
    finally:
        await admin.close()


async def close_scratch(scratch: Scratch) -> None:
    if scratch.keep:
        print(f"kept: --reuse {scratch.name}")
        return
    admin = await asyncpg.connect(f"{scratch.dsn}/postgres")
    try:
        await admin.execute(f'DROP DATABASE "{scratch.name}" WITH (FORCE)')
    finally:
        await admin.close()


async def loaded_tickets(scratch: Scratch) -> int:
    conn = await asyncpg.connect(f"{scratch.dsn}/{scratch.name}")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM requester"))
    finally:
        await conn.close()


def migration_statements() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The trigram index statements of the migration itself (create, drop)."""
    path = REPO / "rightsdesk/migrations/versions"
    [source] = [p for p in path.glob("*.py") if "pg_trgm" in p.read_text(encoding="utf-8")]
    spec = importlib.util.spec_from_file_location("search_migration", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._POSTGRESQL_SEARCH, module._POSTGRESQL_SEARCH_DROP


async def load(scratch: Scratch, total: int, now: dt.datetime = NOW) -> None:
    """Fill a migrated, empty desk with `total` tickets (see the module's docstring)."""
    create, drop = migration_statements()
    conn = await asyncpg.connect(f"{scratch.dsn}/{scratch.name}")
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
            f"false, 0, 'parsed', false, '{{}}', {received}, {received} "
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
        await conn.execute("VACUUM ANALYZE")
        indexed = time.perf_counter() - started - loaded
        print(f"loaded {total:,} tickets in {loaded:.1f}s, indexes and VACUUM in {indexed:.1f}s")
    finally:
        await conn.close()
