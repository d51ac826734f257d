"""Benchmark: the requester portal on a real server (SQLite in a scratch folder).

    .venv/bin/python bench/portal.py [--megabytes 50] [--requests 200] [--clients 20]

Seals a package of one `--megabytes` file (`tickets package`), delivers it (`tickets deliver`:
summary, JSON, the link), opens it with the code and downloads the file, timing each; then has
`--clients` concurrent clients fetch the link's page (a locked read, an audit event, a page)
beside `/healthz` (no database) and prints p50/p95 of each. No target in the issue: the numbers
say what a package of that size costs and how far the audited page is from the trivial route.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from rightsdesk.clock import FrozenClock  # noqa: E402
from rightsdesk.config_sections import DatabaseSettings  # noqa: E402
from rightsdesk.db import Database  # noqa: E402
from tests.portal_server import PortalUnderTest, csrf_of, path_of, portal_settings  # noqa: E402


async def _migrate(url: str) -> None:
    db = Database(DatabaseSettings(url=url))
    try:
        await db.migrate()
    finally:
        await db.dispose()


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


async def _load(base: str, path: str, requests: int, clients: int) -> list[float]:
    times: list[float] = []
    queue = list(range(requests))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while queue:
                queue.pop()
                start = time.perf_counter()
                got = await http.get(path)
                times.append(time.perf_counter() - start)
                assert got.status_code == 200, got.status_code

    await asyncio.gather(*(client() for _ in range(clients)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rightsdesk-bench-portal-"))
    url = f"sqlite+aiosqlite:///{folder / 'desk.db'}"
    asyncio.run(_migrate(url))
    settings = portal_settings(
        url, folder, max_package_bytes=(args.megabytes + 8) << 20, max_downloads=100
    )
    server = PortalUnderTest(settings, FrozenClock(dt.datetime.now(dt.UTC))).start()
    try:
        tid = server.verified_access_ticket("li.na@example.com", "u1")
        content = os.urandom(args.megabytes << 20)
        start = time.perf_counter()
        server.package(tid, ("export.bin", content))
        sealed = time.perf_counter() - start
        start = time.perf_counter()
        link = path_of(server.deliver(tid))
        delivered = time.perf_counter() - start
        http = server.client()
        page = http.get(link)
        sent = http.post(f"{link}/send", data={"csrf": csrf_of(page.text)})
        _, code = server.last_code("package_code")
        opened = http.post(f"{link}/open", data={"csrf": csrf_of(sent.text), "code": code})
        first = re.findall(r"/f/(\d+)\"", opened.text)[0]
        start = time.perf_counter()
        got = http.get(f"{link}/f/{first}")
        downloaded = time.perf_counter() - start
        assert got.content == content
        mb = args.megabytes
        print(f"package of {mb} MB: sealed and stored in {sealed:.2f} s ({mb / sealed:.0f} MB/s)")
        print(f"delivered (summary, JSON, link) in {delivered * 1000:.0f} ms")
        print(f"downloaded {mb} MB in {downloaded:.2f} s ({mb / downloaded:.0f} MB/s)")
        base = server.url
        health = asyncio.run(_load(base, "/healthz", args.requests, args.clients))
        link_page = asyncio.run(_load(base, link, args.requests, args.clients))
        print(f"{args.clients} clients, {args.requests} requests each route:")
        print(f"  /healthz         {_percentiles(health)}")
        print(f"  /p/<token> page  {_percentiles(link_page)} (each an audit event)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
