"""Benchmark: the console's pages over a large desk on PostgreSQL, with concurrent clients.

    .venv/bin/python bench/console.py [--tickets 1000000] [--clients 20] [--requests 30]

Creates a scratch database, loads the tickets with COPY (bench/digest.py's loader: most long
closed, 3 % active), starts `rightsdesk run` on it as its own process (console only), logs in,
then has N concurrent clients fetch each route in turn and prints p50/p95 per route, beside
/healthz (a route that touches no database or template) in the same run. Target: p95 under
150 ms for each page and within 5x of the trivial route.
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

from bench.digest import load  # noqa: E402
from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config import Settings  # noqa: E402
from rightsdesk.service import Desk  # noqa: E402

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30, help="per client and route")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--port", type=int, default=18631)
    args = parser.parse_args()
    database = f"rightsdesk_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{args.dsn}/postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    now = dt.datetime.now(dt.UTC)
    url = args.dsn.replace("postgresql://", "postgresql+asyncpg://") + f"/{database}"
    workdir = Path(tempfile.mkdtemp(prefix="rightsdesk-bench-console-"))
    settings = Settings(database={"url": url}, desk={"data_dir": workdir / "var"})  # type: ignore[arg-type]
    desk = Desk.build(settings, FrozenClock(now))
    service: subprocess.Popen[bytes] | None = None
    try:
        await desk.db.migrate()
        await load(args.dsn, database, args.tickets, 0.03, now)
        conn = await asyncpg.connect(f"{args.dsn}/{database}")
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('ticket', 'id'), (SELECT max(id) FROM ticket))"
        )
        await conn.execute(
            "INSERT INTO ticketcounter (year, last_seq) VALUES (2026, $1)"
            " ON CONFLICT (year) DO UPDATE SET last_seq = $1",
            args.tickets,
        )
        await conn.close()
        await desk.staff.add("bench", "bench@example.com", "dpo", PASSWORD, "en")
        # One ticket with a real history for the ticket page (the loaded ones have none).
        from rightsdesk.models import Channel, RequestType
        from rightsdesk.tickets import Contact, NewTicket

        opened = await desk.tickets.open(
            NewTicket(Channel.EMAIL, Contact.email("zhang@example.com"), [RequestType.ERASURE],
                      now, subject="请删除我的账号", text="请删除我的账号和全部数据。" * 20)
        )  # fmt: skip
        await desk.tickets.assign(opened.public_id, "console:bench", "bench")
        await desk.tickets.mark_verified(opened.public_id, "console:bench", "checked")
        await desk.tickets.start(opened.public_id, "console:bench")
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
        )
        log = (workdir / "service.log").open("wb")
        service = subprocess.Popen(  # noqa: ASYNC220  (the benchmark's own server, once)
            [sys.executable, "-m", "rightsdesk", "run"], cwd=workdir, env=env, stderr=log
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
            "ticket page": f"/tickets/{opened.public_id}",
        }
        timings = await hammer(base, routes, args.clients, args.requests)
        trivial = percentile(timings["trivial (/healthz)"], 0.95)
        print(f"{args.tickets:,} tickets, {args.clients} concurrent clients, PostgreSQL")
        for name, values in timings.items():
            p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
            ratio = percentile(values, 0.95) / trivial if trivial else 0
            print(f"{name:<32} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   {ratio:5.1f}x trivial p95")
        print("search: not measured (the search of issue #13 is not on this branch)")
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        await desk.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
