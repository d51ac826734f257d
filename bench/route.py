"""Benchmark (#15): from SMTP to ticket and acknowledgement, and the limit beside it.

    .venv/bin/python bench/route.py [--messages 5000] [--clients 20] [--database sqlite]
    .venv/bin/python bench/route.py --database postgresql --replicas 1,2,3
    .venv/bin/python bench/route.py --sustained [--messages 20000] [--minutes 10]

A desk (the SMTP door and the intake worker, with the trained classifier if there is one)
runs in a process of its own, and on PostgreSQL `--replicas` - 1 more processes route beside
it (workers only). 20 client threads send 5,000 distinct requests (zh and en, a third from
registered accounts, so verification starts and a code mail is queued). Printed:

- end to end: messages / (first 250 -> last ticket and acknowledgement committed), and how
  long routing went on after the last 250;
- the door's time to 250 (MAIL, RCPT, DATA on an open connection) during the run, p50 / p99;
- the limit: the rows the run wrote (tickets, their types, requesters and contacts, events,
  challenges, outbound mail and outbox entries, the messages' marks) written again by the
  simplest loop of plain INSERTs, one transaction per batch of `--batch` messages, into a
  fresh database of the same kind on the same disk, with the same pragmas and indexes;
- from inside the desk's process, during the burst: the event loop's lag (a 1 ms sleep's
  overshoot), the garbage collector's pauses, and on SQLite who held the writer lock how long
  (the door's group commit, routing's batches). `ROUTE_BENCH_STACKS=1`: every thread's stack
  in each stall of the loop over 25 ms, to stderr.

`--sustained`: `--messages` over `--minutes` at a steady rate; the backlog (stored, not yet
routed) and the desk's RSS every 30 s, at start and at the end (the desk runs without the
burst's probe, which keeps every sample). `--memory`: where the desk's memory went, from
inside it (bench/memory_probe.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRIVACY = "privacy@localhost"
DRAIN_SECONDS = 300  # --sustained: how long to wait for the backlog after the last 250
SESSION_SECONDS = 300  # a new connection after this long: the door closes one at 600 s
TRACE_ENV = "ROUTE_BENCH_TRACEMALLOC"  # read by bench/memory_probe.py
PG_ADMIN = os.environ.get("RIGHTSDESK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ZH = [
    "您好，请删除我在贵公司保存的全部个人信息。",
    "我想查询你们保存了我哪些个人数据，请提供一份副本。",
    "请注销我的账号，并删除相关的个人信息。",
    "我的手机号码有误，请更正我的个人资料。",
]
EN = [
    "Please delete all personal data you hold about me.",
    "I would like a copy of all the personal information you hold about me.",
    "Please close my account and erase my data.",
    "My address in your records is wrong, please correct it.",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sender(i: int) -> str:
    return f"user{i}@bench.example"


def request(run: str, i: int) -> bytes:
    text = (ZH if i % 2 == 0 else EN)[i % 4]
    return (
        f"From: {sender(i)}\r\nTo: {PRIVACY}\r\nSubject: {'个人信息' if i % 2 == 0 else 'Data'} {i}"
        f"\r\nMessage-ID: <{run}-{i}@bench.example>\r\nContent-Type: text/plain; charset=utf-8"
        f"\r\n\r\n{text}\r\n编号 / ref {i}\r\n"
    ).encode()


# ---- the desk's processes ---------------------------------------------------------------------


def _env(url: str, data_dir: Path, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(
        RIGHTSDESK_DATABASE__URL=url,
        RIGHTSDESK_DESK__DATA_DIR=str(data_dir),
        RIGHTSDESK_SMTP__PORT=str(smtp_port),
        # The clients stand for many mail servers, all of them on 127.0.0.1.
        RIGHTSDESK_SMTP__MAX_CONNECTIONS_PER_CLIENT="1000",
        RIGHTSDESK_SECURITY__SIGNING_KEY="bench-route-signing-key-0123456789",
        PYTHONPATH=str(ROOT),
    )
    return env


async def _serve(door: bool) -> None:
    """In a child process: the door and a worker (or a worker alone) until SIGTERM."""
    from intake.smtp import SmtpReceiver
    from rightsdesk.config import Settings
    from rightsdesk.pipeline import IntakeWorker
    from rightsdesk.service import Desk, warm_up

    settings = Settings()
    desk = Desk.build(settings)
    await warm_up(desk)  # as `rightsdesk run` does before its doors open
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # The burst's figures only: the probe keeps every sample (a loop lag a millisecond, 112
    # bytes each), which over --sustained's 10 minutes was 4-5 MB a minute of the desk's RSS.
    probe = Probe(desk.db) if os.environ.get(PROBE_ENV) else None
    lag = asyncio.create_task(probe.lag(stop)) if probe is not None else None
    receiver = None
    if door:
        receiver = SmtpReceiver(settings.smtp, settings.mail, desk.inbox, [PRIVACY], cpu=desk.cpu)
        await receiver.start()
    worker = asyncio.create_task(IntakeWorker(desk.pipeline, desk.inbox).run(stop))
    memory = None
    if path := os.environ.get(MEMORY_ENV):
        from memory_probe import MemoryProbe  # bench/memory_probe.py

        memory = asyncio.create_task(MemoryProbe(Path(path)).run(stop, MEMORY_EVERY))
    print("ready", flush=True)
    await stop.wait()
    await worker
    if lag is not None:
        await lag
    if memory is not None:
        await memory
    if receiver is not None:
        await receiver.stop()
    await desk.close()
    if probe is not None:
        probe.save(Path(settings.desk.data_dir) / PROBE_FILE)


PROBE_FILE = "probe.json"
PROBE_ENV = "ROUTE_BENCH_PROBE"  # set for a burst: the desk runs the Probe
STACKS_ENV = "ROUTE_BENCH_STACKS"
MEMORY_ENV = "ROUTE_BENCH_MEMORY"  # --memory: where the desk writes its memory's lines
MEMORY_EVERY = 30.0  # seconds between two of them


class Probe:
    """In the desk's process: the event loop's lag (a 1 ms sleep's overshoot: what a 250
    ready to go waits for) and, on SQLite, who held the in-process writer lock how long, and
    how long the door's group commit waited for it; each with the wall time it ended."""

    def __init__(self, db: Any) -> None:
        self.lags: list[tuple[float, float]] = []
        self.holds: list[tuple[float, str, float, float]] = []  # (end, holder, waited, held)
        self.collections: list[tuple[float, int, float]] = []  # (end, generation, seconds)
        self._collecting = 0.0
        gc.callbacks.append(self._collected)
        if db._sqlite_writer is not None:
            db._sqlite_writer = _TimedLock(self.holds)

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            seconds = time.perf_counter() - self._collecting
            self.collections.append((time.time(), info["generation"], seconds))

    async def lag(self, stop: asyncio.Event) -> None:
        if os.environ.get(STACKS_ENV):
            threading.Thread(target=self._watch, daemon=True).start()
        while not stop.is_set():
            begun = time.perf_counter()
            self._beat = begun
            await asyncio.sleep(0.001)
            self.lags.append((time.time(), time.perf_counter() - begun - 0.001))

    _beat = 0.0

    def _watch(self) -> None:
        """`--stacks`: the loop thread's stack 25 ms into each stall, to stderr."""
        import traceback

        main = threading.main_thread().ident
        seen = 0.0
        while True:
            time.sleep(0.005)
            beat = self._beat
            if beat and beat != seen and time.perf_counter() - beat > 0.025:
                seen = beat
                late = (time.perf_counter() - beat) * 1000
                names = {t.ident: t.name for t in threading.enumerate()}
                for ident, frame in sys._current_frames().items():
                    if ident == threading.get_ident():
                        continue
                    stack = "".join(traceback.format_stack(frame, limit=10))
                    print(
                        f"---- stall {late:.0f} ms, thread {names.get(ident)}"
                        f"{' (loop)' if ident == main else ''}\n{stack}",
                        file=sys.stderr,
                        flush=True,
                    )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        found = {"lags": self.lags, "holds": self.holds, "gc": self.collections}
        path.write_text(json.dumps(found))


class _TimedLock(asyncio.Lock):
    def __init__(self, holds: list[tuple[float, str, float, float]]) -> None:
        super().__init__()
        self._holds = holds
        self._asked = 0.0
        self._taken = 0.0

    async def acquire(self) -> bool:  # type: ignore[override]
        asked = time.perf_counter()
        await super().acquire()
        self._asked, self._taken = asked, time.perf_counter()
        return True

    def release(self) -> None:
        task = asyncio.current_task()
        holder = "door" if task is not None and task.get_name() == "inbox-writer" else "routing"
        self._holds.append(
            (time.time(), holder, self._taken - self._asked, time.perf_counter() - self._taken)
        )
        super().release()


def probed(data_dir: Path, first: float, last: float) -> str:
    """The probe's figures between `first` and `last` (wall times), one line each."""
    found = json.loads((data_dir / PROBE_FILE).read_text())
    lags = [lag for at, lag in found["lags"] if first <= at <= last]
    lines = []
    if lags:
        lines.append(
            f"  loop lag (1 ms sleep's overshoot, {len(lags)} samples): p50 "
            f"{statistics.median(lags) * 1000:.1f} ms, p99 {percentile(lags, 0.99) * 1000:.1f}"
            f" ms, max {max(lags) * 1000:.1f} ms, > 20 ms: {sum(lag > 0.02 for lag in lags)}"
        )
    for generation in (0, 1, 2):
        pauses = [s for at, g, s in found["gc"] if g == generation and first <= at <= last]
        if pauses:
            lines.append(
                f"  garbage collections, generation {generation}: {len(pauses)}, "
                f"max {max(pauses) * 1000:.1f} ms, total {sum(pauses) * 1000:.0f} ms"
            )
    for holder in ("door", "routing"):
        mine = [(w, h) for at, who, w, h in found["holds"] if who == holder and first <= at <= last]
        if mine:
            waits, helds = [w for w, _ in mine], [h for _, h in mine]
            lines.append(
                f"  writer lock, {holder} ({len(mine)}): waited p50 "
                f"{statistics.median(waits) * 1000:.1f} / p99 {percentile(waits, 0.99) * 1000:.1f}"
                f" ms, held p50 {statistics.median(helds) * 1000:.1f} / p99 "
                f"{percentile(helds, 0.99) * 1000:.1f} / max {max(helds) * 1000:.1f} ms"
            )
    return "\n".join(lines)


def start(env: dict[str, str], door: bool) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve" if door else "--route"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("the desk did not start")
    return process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- the clients ------------------------------------------------------------------------------


def drive(
    port: int, run: str, indexes: list[int], clients: int, rate: float | None = None
) -> tuple[float, float, list[float]]:
    """Send one message per index from `clients` threads; (first 250, last 250, latencies).
    `rate`: messages a second in all, spread evenly (else as fast as the door answers)."""
    latencies: list[float] = []
    firsts: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()

    def connect() -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=120)
        smtp.ehlo("bench.example")
        return smtp

    def client(n: int) -> None:
        mine: list[float] = []
        smtp, opened = connect(), time.monotonic()
        for k, i in enumerate(indexes[n::clients]):
            if rate is not None:
                due = started + (k * clients + n) / rate
                time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() - opened > SESSION_SECONDS:  # the door ends long sessions
                smtp.quit()
                smtp, opened = connect(), time.monotonic()
            begun = time.monotonic()
            smtp.sendmail(sender(i), [PRIVACY], request(run, i))
            mine.append(time.monotonic() - begun)
            if k == 0:
                with lock:
                    firsts.append(time.time())
        smtp.quit()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return min(firsts), time.time(), latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---- the database -----------------------------------------------------------------------------


class Store:
    """One benchmark database (and its twin for the limit), created and dropped here."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.names: list[str] = []

    def new(self, label: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.folder / (label + '.db')}"
        name = f"rightsdesk_route_bench_{label}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + (
            "/" + name
        )

    def drop(self) -> None:
        for name in self.names:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare(url: str, folder: Path, messages: int) -> None:
    """Migrated, with a third of the senders registered (verification starts for them)."""
    from rightsdesk.accounts import AccountDirectory
    from rightsdesk.clock import SystemClock
    from rightsdesk.config_sections import DatabaseSettings
    from rightsdesk.db import Database

    db = Database(DatabaseSettings(url=url))
    try:
        await db.migrate()
        csv = folder / "accounts.csv"
        rows = [f"a{i},{sender(i)},,User {i}," for i in range(0, messages, 3)]
        csv.write_text("account_id,email,phone,name,username\n" + "\n".join(rows) + "\n")
        await AccountDirectory(db, SystemClock()).import_csv(csv)
    finally:
        await db.dispose()


def _plain(url: str) -> str:
    return url.replace("sqlite+aiosqlite:///", "").replace("postgresql+asyncpg://", "postgresql://")


async def counts(url: str) -> tuple[int, int, int, float | None]:
    """(stored, tickets, acknowledgements, when the newest ticket or acknowledgement was
    written, as a POSIX time)."""
    sql = (
        "SELECT (SELECT count(*) FROM message WHERE parse_status = 'stored'),"
        " (SELECT count(*) FROM ticket),"
        " (SELECT count(*) FROM outboxentry WHERE kind = 'acknowledgement'),"
        " (SELECT max(created_at) FROM ticket), (SELECT max(created_at) FROM outboxentry)"
    )
    if url.startswith("sqlite"):
        with sqlite3.connect(_plain(url), timeout=30) as conn:
            stored, tickets, acks, t1, t2 = conn.execute(sql).fetchone()
        newest = max((t for t in (t1, t2) if t), default=None)
        when = _sqlite_time(newest) if newest else None
        return stored, tickets, acks, when
    conn = await asyncpg.connect(_plain(url))
    try:
        stored, tickets, acks, t1, t2 = await conn.fetchrow(sql)
    finally:
        await conn.close()
    newest = max((t for t in (t1, t2) if t), default=None)
    return stored, tickets, acks, newest.timestamp() if newest else None


def _sqlite_time(value: str) -> float:
    import datetime as dt

    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def wait_until(
    url: str, done: Callable[[tuple[int, int, int, float | None]], bool], seconds: float = 3600
) -> Any:
    """The counts once `done` says so; None after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = asyncio.run(counts(url))
        if done(found):
            return found
        time.sleep(0.25)
    return None


# ---- the limit --------------------------------------------------------------------------------

# What routing writes, parents first; the inbound messages are the door's (there before).
ROUTED_TABLES = (
    "requester",
    "requestercontact",
    "ticket",
    "tickettype",
    "event",
    "verificationchallenge",
)
OUT_TABLES = ("message", "outboxentry")


def limit(source: str, twin: str, batch: int) -> tuple[int, float]:
    """Write the rows `source` holds into `twin` (migrated, empty) by plain INSERTs, one
    transaction per `batch` routed messages; (messages, seconds)."""
    if source.startswith("sqlite"):
        return _limit_sqlite(_plain(source), _plain(twin), batch)
    return asyncio.run(_limit_postgresql(_plain(source), _plain(twin), batch))


def _groups(rows: dict[str, list[dict[str, Any]]], batch: int) -> list[dict[str, list[Any]]]:
    """The rows of each batch of routed messages, by the ticket they belong to."""
    tickets = rows["ticket"]
    by_ticket: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for table in ("tickettype", "event", "verificationchallenge", "outboxentry"):
        found: dict[Any, list[dict[str, Any]]] = {}
        for row in rows[table]:
            found.setdefault(row["ticket_id"], []).append(row)
        by_ticket[table] = found
    out = [m for m in rows["message"] if m["direction"] == "out"]
    out_by_ticket: dict[Any, list[dict[str, Any]]] = {}
    for row in out:
        out_by_ticket.setdefault(row["ticket_id"], []).append(row)
    inbound = {m["ticket_id"]: m for m in rows["message"] if m["direction"] == "in"}
    requesters = {r["id"]: r for r in rows["requester"]}
    contacts: dict[Any, list[dict[str, Any]]] = {}
    for row in rows["requestercontact"]:
        contacts.setdefault(row["requester_id"], []).append(row)
    groups = []
    for start in range(0, len(tickets), batch):
        group: dict[str, list[Any]] = {t: [] for t in (*ROUTED_TABLES, *OUT_TABLES)}
        group["marks"] = []
        for ticket in tickets[start : start + batch]:
            requester = requesters.pop(ticket["requester_id"], None)
            if requester is not None:
                group["requester"].append(requester)
                group["requestercontact"] += contacts.get(requester["id"], [])
            group["ticket"].append(ticket)
            for table in ("tickettype", "event", "verificationchallenge"):
                group[table] += by_ticket[table].get(ticket["id"], [])
            group["message"] += out_by_ticket.get(ticket["id"], [])
            group["outboxentry"] += by_ticket["outboxentry"].get(ticket["id"], [])
            if ticket["id"] in inbound:
                group["marks"].append(inbound[ticket["id"]])
        groups.append(group)
    return groups


MARK = (
    "UPDATE message SET ticket_id = {p}, parse_status = 'parsed', processed_at = {p}, "
    "sender = {p}, subject = {p}, text = {p}, new_text = {p}, details = {p}, acknowledge = {p} "
    "WHERE id = {p}"
)


def _mark_values(m: dict[str, Any]) -> list[Any]:
    return [
        m["ticket_id"],
        m["processed_at"],
        m["sender"],
        m["subject"],
        m["text"],
        m["new_text"],
        m["details"],
        m["acknowledge"],
        m["id"],
    ]


def _limit_sqlite(source: str, twin: str, batch: int) -> tuple[int, float]:
    from rightsdesk.db import _connect_sqlite

    src = sqlite3.connect(source)
    src.row_factory = sqlite3.Row
    rows = {
        t: [dict(r) for r in src.execute(f"SELECT * FROM {t} ORDER BY 1")]
        for t in (*ROUTED_TABLES, "message", "outboxentry", "account")
    }
    src.close()
    groups = _groups(rows, batch)
    conn = _connect_sqlite(twin)  # the desk's own pragmas
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    conn.execute("BEGIN IMMEDIATE")
    _insert_sqlite(conn, "account", rows["account"])
    stored = [
        dict(m, ticket_id=None, parse_status="stored")
        for m in rows["message"]
        if m["direction"] == "in"
    ]
    _insert_sqlite(conn, "message", stored)
    conn.execute("COMMIT")
    started = time.perf_counter()
    for group in groups:
        conn.execute("BEGIN IMMEDIATE")
        for table in (*ROUTED_TABLES, *OUT_TABLES):
            _insert_sqlite(conn, table, group[table])
        for m in group["marks"]:
            conn.execute(MARK.format(p="?"), _mark_values(m))
        for _ in group["ticket"]:
            conn.execute(
                "INSERT INTO ticketcounter (year, last_seq) VALUES (2026, 1) "
                "ON CONFLICT (year) DO UPDATE SET last_seq = last_seq + 1"
            )
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return len(rows["ticket"]), seconds


def _insert_sqlite(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # the simplest loop: one plain INSERT a row
        names = list(row)
        conn.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [row[n] for n in names],
        )


async def _limit_postgresql(source: str, twin: str, batch: int) -> tuple[int, float]:
    src = await asyncpg.connect(source)
    try:
        rows = {
            t: [dict(r) for r in await src.fetch(f"SELECT * FROM {t} ORDER BY 1")]
            for t in (*ROUTED_TABLES, "message", "outboxentry", "account")
        }
    finally:
        await src.close()
    groups = _groups(rows, batch)
    conn = await asyncpg.connect(twin)
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(json_type, encoder=str, decoder=str, schema="pg_catalog")
    try:
        async with conn.transaction():
            await _insert_pg(conn, "account", rows["account"])
            stored = [
                dict(m, ticket_id=None, parse_status="stored")
                for m in rows["message"]
                if m["direction"] == "in"
            ]
            await _insert_pg(conn, "message", stored)
        mark = MARK.format(p="{}")
        mark = mark.format(*(f"${n}" for n in range(1, 10)))
        started = time.perf_counter()
        for group in groups:
            async with conn.transaction():
                for table in (*ROUTED_TABLES, *OUT_TABLES):
                    await _insert_pg(conn, table, group[table])
                for m in group["marks"]:
                    await conn.execute(mark, *_mark_values(m))
                for _ in group["ticket"]:
                    await conn.execute(
                        "INSERT INTO ticketcounter (year, last_seq) VALUES (2026, 1) "
                        "ON CONFLICT (year) DO UPDATE SET last_seq = ticketcounter.last_seq + 1"
                    )
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return len(rows["ticket"]), seconds


async def _insert_pg(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        names = list(row)
        marks = ", ".join(f"${n}" for n in range(1, len(names) + 1))
        await conn.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", *[row[n] for n in names]
        )


# ---- runs -------------------------------------------------------------------------------------


def burst(kind: str, messages: int, clients: int, replicas: int, batch: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rightsdesk-route-"))
    store = Store(kind, folder)
    processes: list[subprocess.Popen[str]] = []
    try:
        url = store.new("run")
        asyncio.run(prepare(url, folder, messages))
        port = free_port()
        env = _env(url, folder / "var", port) | {PROBE_ENV: "1"}
        processes.append(start(env, door=True))
        processes += [start(env, door=False) for _ in range(replicas - 1)]
        indexes = list(range(messages))
        random.Random(15).shuffle(indexes)
        first, last, latencies = drive(port, uuid.uuid4().hex[:8], indexes, clients)
        found = wait_until(url, lambda c: c[0] == 0 and c[1] >= messages and c[2] >= messages)
        if found is None:
            raise SystemExit("routing did not finish within the hour")
        _, tickets, acks, newest = found
        assert newest is not None
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        span = newest - first
        twin = store.new("limit")
        asyncio.run(_migrate(twin))
        routed, seconds = limit(url, twin, batch)
        print(
            f"{kind}, {replicas} replica(s): {messages} messages by {clients} clients, "
            f"{tickets} tickets, {acks} acknowledgements"
        )
        print(
            f"  end to end: {messages / span:7.1f} msg/s  (first 250 -> last ticket and "
            f"acknowledgement {span:.1f} s; routing went on {newest - last:.1f} s after the "
            f"last 250)"
        )
        print(
            f"  door: {len(latencies) / (last - first):7.1f} msg/s; time to 250 p50 "
            f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
            f"{percentile(latencies, 0.99) * 1000:.1f} ms"
        )
        if door_probe := probed(folder / "var", first, last):
            print(door_probe)
        print(
            f"  limit: {routed / seconds:7.1f} msg/s  (the same rows by plain INSERTs, "
            f"{batch} messages a transaction: {seconds:.1f} s)  ->  end to end is "
            f"{(messages / span) / (routed / seconds):.2f} of it"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        store.drop()


async def _migrate(url: str) -> None:
    from rightsdesk.config_sections import DatabaseSettings
    from rightsdesk.db import Database

    db = Database(DatabaseSettings(url=url))
    try:
        await db.migrate()
    finally:
        await db.dispose()


def sustained(kind: str, messages: int, clients: int, minutes: float, memory: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rightsdesk-route-"))
    store = Store(kind, folder)
    processes: list[subprocess.Popen[str]] = []
    try:
        url = store.new("sustained")
        asyncio.run(prepare(url, folder, messages))
        port = free_port()
        env = _env(url, folder / "var", port)
        if memory:
            env[MEMORY_ENV] = str(folder / "memory.jsonl")
        desk = start(env, door=True)
        processes.append(desk)
        rate = messages / (minutes * 60)
        print(f"{kind}: {messages} messages over {minutes:g} min ({rate:.1f}/s), {clients} clients")
        print(f"  start: RSS {rss_mb(desk.pid):.0f} MB")
        result: list[Any] = []
        sending = threading.Thread(
            target=lambda: result.append(
                drive(port, uuid.uuid4().hex[:8], list(range(messages)), clients, rate)
            )
        )
        began = time.monotonic()
        sending.start()
        backlogs: list[int] = []
        while sending.is_alive():
            sending.join(timeout=30)
            stored, tickets, _, _ = asyncio.run(counts(url))
            backlogs.append(stored)
            print(
                f"  {time.monotonic() - began:5.0f} s: {tickets} tickets, backlog {stored}, "
                f"RSS {rss_mb(desk.pid):.0f} MB",
                flush=True,
            )
        _, last, latencies = result[0]
        drained = wait_until(url, lambda c: c[0] == 0, seconds=DRAIN_SECONDS)
        print(
            "  after the last 250: backlog "
            + (
                f"0 after {time.time() - last:.0f} s"
                if drained
                else f"still {asyncio.run(counts(url))[0]} after {DRAIN_SECONDS} s (not waited for)"
            )
        )
        print(
            f"  end: RSS {rss_mb(desk.pid):.0f} MB; backlog at most {max(backlogs)}; door p50 "
            f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
            f"{percentile(latencies, 0.99) * 1000:.1f} ms"
        )
        desk.send_signal(signal.SIGTERM)
        desk.wait(timeout=60)
        if memory:
            from memory_probe import report  # bench/memory_probe.py

            print(report(folder / "memory.jsonl"))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        store.drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--replicas", default="1", help="PostgreSQL: e.g. 1,2,3")
    parser.add_argument("--batch", type=int, default=64, help="messages a transaction (limit)")
    parser.add_argument("--sustained", action="store_true")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--memory",
        action="store_true",
        help="--sustained: where the desk's memory went, from inside it (bench/memory_probe.py;"
        f" {TRACE_ENV}=1 adds tracemalloc's growth by traceback)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--route", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.route:
        asyncio.run(_serve(door=args.serve))
        return
    if args.sustained:
        sustained(args.database, args.messages or 20000, args.clients, args.minutes, args.memory)
        return
    for replicas in [int(n) for n in args.replicas.split(",")]:
        if replicas > 1 and args.database == "sqlite":
            raise SystemExit("replicas share a PostgreSQL database")
        burst(args.database, args.messages or 5000, args.clients, replicas, args.batch)


if __name__ == "__main__":
    main()
