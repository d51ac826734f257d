"""Accepting deliveries durably: every door hands its bytes to the Inbox, which stores them
(deduplicated, many deliveries in one commit) before the door says 250."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select

from rightsdesk.clock import Clock
from rightsdesk.db import Database
from rightsdesk.models import (
    Channel,
    Message,
)

log = logging.getLogger("rightsdesk.intake")


@dataclass(frozen=True)
class Delivery:
    """What a door received, before anything else is done with it."""

    channel: Channel
    raw: bytes
    dedupe_key: str
    message_id: str | None = None
    envelope_from: str | None = None
    envelope_to: Sequence[str] = ()
    raw_sha256: str = ""  # given by a door that hashed the bytes off the loop, else computed


@dataclass(frozen=True)
class Accepted:
    message_row_id: int
    duplicate: bool


class Inbox:
    """Stores deliveries durably before any door acknowledges them.

    Deliveries that arrive together share one transaction (group commit): one fsync
    acknowledges many messages. Every caller of `accept` returns only after its commit.
    """

    def __init__(self, db: Database, clock: Clock, max_batch: int = 64) -> None:
        self.db = db
        self.clock = clock
        self.max_batch = max_batch
        self.stored = asyncio.Event()  # set after each commit: wakes the intake worker
        self.last_delivery = 0.0  # loop time of the newest delivery: the door is busy
        self.unstored = 0  # deliveries not yet stored: their doors wait for a commit
        self._queue: asyncio.Queue[tuple[Delivery, asyncio.Future[Accepted]]] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, delivery: Delivery) -> Accepted:
        if self._writer is None or self._writer.done():
            self._queue = asyncio.Queue()
            self._writer = asyncio.create_task(self._write_batches(), name="inbox-writer")
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        self.last_delivery = loop.time()
        done: asyncio.Future[Accepted] = loop.create_future()
        self.unstored += 1
        try:
            await self._queue.put((delivery, done))
            return await done
        finally:
            self.unstored -= 1

    async def wait_for_quiet(self, quiet_seconds: float, at_most: float) -> None:
        """Wait until no delivery has arrived for `quiet_seconds` and none waits to be stored
        (but no longer than `at_most`): work that can wait (routing, sending replies) leaves
        the loop and the write lock to the doors during a burst. Clients that all wait for
        one slow commit send nothing meanwhile: that is not quiet, and a routing batch taken
        then (60-90 ms of the write lock on SQLite) made the next commit slower still."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + at_most
        # Polling on purpose: "quiet" is the absence of events, which no Event can signal.
        while (  # noqa: ASYNC110
            loop.time() - self.last_delivery < quiet_seconds or self.unstored
        ) and loop.time() < deadline:
            await asyncio.sleep(quiet_seconds)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None

    async def _write_batches(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                results = await self._store([delivery for delivery, _ in batch])
            except Exception as exc:  # every waiter answers "try again later" (SMTP 451)
                log.error("storing %d message(s) failed: %s", len(batch), type(exc).__name__)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)
            self.stored.set()

    async def _store(self, deliveries: list[Delivery]) -> list[Accepted]:
        now = self.clock.now()
        rows: list[dict[str, Any]] = [
            {
                "direction": "in",
                "channel": str(d.channel),
                "dedupe_key": d.dedupe_key,
                "message_id": d.message_id,
                "envelope_from": d.envelope_from,
                "envelope_to": list(d.envelope_to),
                "raw": d.raw,
                "raw_size": len(d.raw),
                "raw_sha256": d.raw_sha256 or hashlib.sha256(d.raw).hexdigest(),
                "parse_status": "stored",
                "sender_authenticated": False,
                "details": {},
                "received_at": now,
            }
            for d in deliveries
        ]
        if self.db.is_sqlite:
            inserted, existing = await self.db.write_sqlite(partial(_store_sqlite, rows))
        else:
            inserted, existing = await self._store_postgresql(rows)
        results: list[Accepted] = []
        first_seen: set[str] = set()
        for d in deliveries:
            if d.dedupe_key in inserted and d.dedupe_key not in first_seen:
                first_seen.add(d.dedupe_key)
                results.append(Accepted(inserted[d.dedupe_key], duplicate=False))
            else:
                row_id = inserted.get(d.dedupe_key) or existing[d.dedupe_key]
                results.append(Accepted(row_id, duplicate=True))
        return results

    async def _store_postgresql(
        self, rows: list[dict[str, Any]]
    ) -> tuple[dict[str, int], dict[str, int]]:
        # One statement for every batch size (executemany): compiled once, then cached.
        statement = (
            pg_insert(Message)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(col(Message.id), col(Message.dedupe_key))
        )
        async with self.db.transaction() as session:
            connection = await session.connection()
            result = await connection.execute(statement, rows)
            inserted = {key: row_id for row_id, key in result.all() if key and row_id}
            missing = {row["dedupe_key"] for row in rows} - inserted.keys()
            existing: dict[str, int] = {}
            if missing:
                found = await session.exec(
                    select(Message.dedupe_key, Message.id).where(
                        col(Message.dedupe_key).in_(missing)
                    )
                )
                existing = {key: row_id for key, row_id in found.all() if key and row_id}
        return inserted, existing


_INBOX_COLUMNS = (
    "direction",
    "channel",
    "dedupe_key",
    "message_id",
    "envelope_from",
    "envelope_to",
    "raw",
    "raw_size",
    "raw_sha256",
    "parse_status",
    "sender_authenticated",
    "details",
    "received_at",
)


_SQLITE = sqlite_dialect.dialect()
_SQLITE_PROCESSORS = [
    Message.__table__.c[name].type.dialect_impl(_SQLITE).bind_processor(_SQLITE)  # type: ignore[attr-defined]
    for name in _INBOX_COLUMNS
]


def _store_sqlite(
    rows: list[dict[str, Any]], connection: sqlite3.Connection
) -> tuple[dict[str, int], dict[str, int]]:
    """The batch as one INSERT … RETURNING (and, for duplicates, one SELECT), run inside
    `Database.write_sqlite`'s transaction in its own thread. Values go through the columns' own
    bind processors, so they are stored exactly as the ORM stores them."""
    params: list[Any] = []
    for row in rows:
        for name, process in zip(_INBOX_COLUMNS, _SQLITE_PROCESSORS, strict=True):
            value = row[name]
            params.append(process(value) if process is not None else value)
    one = "(" + ", ".join("?" * len(_INBOX_COLUMNS)) + ")"
    found = connection.execute(
        f"INSERT INTO message ({', '.join(_INBOX_COLUMNS)}) VALUES "
        + ", ".join([one] * len(rows))
        + " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key",
        params,
    ).fetchall()
    inserted = {key: row_id for row_id, key in found if key and row_id}
    missing = sorted({row["dedupe_key"] for row in rows} - inserted.keys())
    existing: dict[str, int] = {}
    if missing:
        marks = ", ".join("?" * len(missing))
        query = f"SELECT dedupe_key, id FROM message WHERE dedupe_key IN ({marks})"
        existing = dict(connection.execute(query, missing).fetchall())
    return inserted, existing
