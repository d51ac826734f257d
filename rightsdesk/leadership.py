"""One replica at a time for work that must not run twice at once (the IMAP watcher).

On PostgreSQL the leader holds a session-level advisory lock on a connection of its own;
if the process dies, PostgreSQL drops the connection and the lock with it, and another
replica takes over at its next try (every `retry_seconds`). On SQLite there is one process,
which always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from rightsdesk.db import Database
from rightsdesk.waiting import sleep_or_stop

log = logging.getLogger("rightsdesk.leadership")


def lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"rightsdesk:{name}".encode()).digest()[:8], "big", signed=True
    )


async def run_as_leader(
    db: Database,
    name: str,
    work: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    retry_seconds: float = 10.0,
) -> None:
    """Run `work(stop_work)` while this process holds leadership of `name`, until `stop`."""
    if db.is_sqlite:
        await work(stop)
        return
    key = lock_key(name)
    while not stop.is_set():
        try:
            async with db.engine.connect() as conn:
                held = (
                    await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                ).scalar()
                await conn.commit()
                if held:
                    log.info("leading %s", name)
                    await _lead(conn, work, stop, retry_seconds)
                    with contextlib.suppress(Exception):
                        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        await conn.commit()
        except Exception as exc:  # the database went away: try again later
            log.warning("leadership of %s: %s", name, type(exc).__name__)
        await sleep_or_stop(stop, retry_seconds)


async def _lead(
    conn: AsyncConnection,
    work: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    check_seconds: float,
) -> None:
    """Run the work; stop it if the lock's connection is lost (another replica may lead)."""
    lost = asyncio.Event()
    stop_work = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            await sleep_or_stop(stop, check_seconds)
            try:
                await conn.execute(text("SELECT 1"))
                await conn.commit()
            except Exception:
                lost.set()
                break
        stop_work.set()

    watcher = asyncio.create_task(watch())
    try:
        await work(stop_work)
    finally:
        stop_work.set()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if lost.is_set():
        log.warning("lost the leadership lock's connection")
