"""The PostgreSQL pool's liveness check (rightsdesk.db): a connection that sat idle is checked
before use and replaced when the server dropped it; one used a moment ago is not checked (its
query fails once if the server dropped it meanwhile, and the pool is renewed)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import func
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from rightsdesk import db as db_module
from rightsdesk.config_sections import DatabaseSettings
from rightsdesk.db import Database
from tests.conftest import PG_DSN


async def _backend(database: Database) -> int:
    async with database.reading() as session:
        return int((await session.exec(select(func.pg_backend_pid()))).one())


async def _terminate(pid: int) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):  # gone from the server's view
            if not await conn.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.2)
    database = Database(DatabaseSettings(url=postgres_database))
    try:
        first = await _backend(database)
        await _terminate(first)
        await asyncio.sleep(0.3)  # idle past the window: checked, found gone, replaced
        assert await _backend(database) != first
    finally:
        await database.dispose()


async def test_a_connection_used_a_moment_ago_is_not_checked(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 60.0)
    database = Database(DatabaseSettings(url=postgres_database))
    try:
        first = await _backend(database)
        await _terminate(first)
        # Within the window nothing checks it: this read meets the dropped connection...
        with pytest.raises(DBAPIError):
            await _backend(database)
        # ... and the pool is renewed for the next one.
        assert await _backend(database) != first
    finally:
        await database.dispose()
