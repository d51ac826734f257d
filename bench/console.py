"""Benchmark: the console's pages over a large desk on PostgreSQL, with concurrent clients.

    .venv/bin/python bench/console.py [--tickets 1000000] [--clients 20] [--requests 30]
                                      [--keep | --reuse DATABASE]

Creates a scratch database and fills it (bench/pg_fixture.py: generate_series inside
PostgreSQL, the search's trigram indexes built after the load), starts `rightsdesk run` on it
as its own process (console only), logs in, then has N concurrent clients fetch each route in
turn and prints p50/p95 per route, beside /healthz (a route that touches no database or
template) in the same run, with the host's load average before and after. Target: p95 under
150 ms for each page and within 5x of the trivial route.

`--keep` leaves the database for `--reuse NAME` (loading and indexing 1,000,000 tickets takes
minutes); each run migrates it first, so a new migration's indexes are built on the loaded rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # run as a script, this folder would hide the intake package

from bench import pg_fixture  # noqa: E402
from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.models import Channel, RequestType  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402
from rightsdesk.tickets import Contact, NewTicket  # noqa: E402

PASSWORD = "bench-password-1"


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    url: str, routes: dict[str, str], clients: int, requests: int, pid: int
) -> tuple[dict[str, list[float]], float]:
    """Each route's timings, and the service's CPU seconds meanwhile (after the logins)."""
    timings: dict[str, list[float]] = {name: [] for name in routes}
    sessions = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(clients)]
    try:
        await asyncio.gather(*(login(s) for s in sessions))
        for s in sessions:  # warm every route once
            for path in routes.values():
                (await s.get(path)).raise_for_status()
        cpu_before = cpu_seconds(pid)

        async def client(session: httpx.AsyncClient, offset: int) -> None:
            names = list(routes)
            for i in range(requests * len(names)):
                name = names[(i + offset) % len(names)]  # every client cycles through the routes
                started = time.perf_counter()
                response = await session.get(routes[name])
                timings[name].append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(client(s, k) for k, s in enumerate(sessions)))
        cpu = cpu_seconds(pid) - cpu_before
    finally:
        for s in sessions:
            await s.aclose()
    return timings, cpu


async def prepare(args: argparse.Namespace, scratch: pg_fixture.Scratch) -> str:
    """Migrate and (when new) fill the database; returns the public id of a ticket with a real
    history (the loaded ones have none) for the ticket page."""
    now = pg_fixture.NOW
    settings = Settings(database={"url": scratch.url}, desk={"data_dir": args.workdir / "var"})  # type: ignore[arg-type]
    desk = Desk.build(settings, FrozenClock(now))
    try:
        started = time.perf_counter()
        await desk.db.migrate()
        print(f"migrated in {time.perf_counter() - started:.1f}s")
        if scratch.fresh:
            await pg_fixture.load(scratch, args.tickets)
        elif (loaded := await pg_fixture.loaded_tickets(scratch)) < args.tickets:
            raise SystemExit(f"{scratch.name} holds {loaded:,} tickets, not {args.tickets:,}")
        if not any(u.name == "bench" for u in await desk.staff.everyone()):
            await desk.staff.add("bench", "bench@example.com", "dpo", PASSWORD, "en")
        conn = await asyncpg.connect(f"{scratch.dsn}/{scratch.name}")
        try:
            ready = await conn.fetchval(
                "SELECT public_id FROM ticket WHERE contact_value = 'zhang@example.com'"
            )
        finally:
            await conn.close()
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
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30, help="per client and route")
    parser.add_argument("--port", type=int, default=18631)
    # A page reads its parts at once (a ticket page: three connections, and a fourth for the
    # session check beside them): twenty clients on a pool of 20 opened and closed overflow
    # connections on most pages (ticket page p95 6.5x /healthz against 4.8x with 40).
    parser.add_argument("--pool-size", type=int, default=40, help="the service's database pool")
    parser.add_argument("--load-only", action="store_true", help="fill the database and stop")
    parser.add_argument("--no-search", action="store_true", help="leave the search routes out")
    pg_fixture.add_arguments(parser, "bench_console")
    args = parser.parse_args()
    args.workdir = Path(tempfile.mkdtemp(prefix="rightsdesk-bench-console-"))
    scratch = await pg_fixture.open_scratch(args)
    url = scratch.url
    service: subprocess.Popen[bytes] | None = None
    try:
        public_id = await prepare(args, scratch)
        if args.load_only:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
        env.update(
            RIGHTSDESK_DATABASE__URL=url,
            RIGHTSDESK_DATABASE__POOL_SIZE=str(args.pool_size),
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
        before = os.getloadavg()
        started = time.perf_counter()
        timings, cpu = await hammer(base, routes, args.clients, args.requests, service.pid)
        elapsed = time.perf_counter() - started
        after = os.getloadavg()
        served = sum(len(v) for v in timings.values())
        print(f"load average (1, 5, 15 min) before {before[0]:.1f} {before[1]:.1f} "
              f"{before[2]:.1f}, after {after[0]:.1f} {after[1]:.1f} {after[2]:.1f}; "
              f"{served / elapsed:.1f} requests/s")  # fmt: skip
        # What the host's other work changes least: the service's own CPU per request, and
        # its share of a core meanwhile (the logins and the warm-up are before either).
        print(f"service CPU {cpu / served * 1000:.2f} ms per request, "
              f"{cpu / elapsed * 100:.0f} % of a core")  # fmt: skip
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
        await pg_fixture.close_scratch(scratch)


if __name__ == "__main__":
    asyncio.run(main())
