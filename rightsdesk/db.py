"""The database: one async engine, sessions, transactions and migrations."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.config_sections import DatabaseSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary, fixed: replicas starting together take turns to migrate.
_MIGRATION_LOCK_KEY = 0x52494748  # "RIGH"


class Database:
    def __init__(self, settings: DatabaseSettings) -> None:
        self.url = make_url(settings.url)
        kwargs: dict[str, Any] = {"echo": settings.echo}
        if self.is_sqlite:
            _ensure_sqlite_dir(settings.url)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = settings.pool_size
            kwargs["max_overflow"] = settings.pool_size * 2
            # The most recently used connection first: under light traffic the same few stay
            # warm (and skip the liveness check below), the rest idle.
            kwargs["pool_use_lifo"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if not self.is_sqlite:
            _ping_when_idle(self.engine)
        # Reads that must not wait for the writer: on SQLite a second engine whose
        # transactions begin DEFERRED (WAL lets them read beside the writer).
        # On PostgreSQL reads run in autocommit: under READ COMMITTED each statement has its
        # own snapshot inside a transaction too, so BEGIN and COMMIT only cost two round trips
        # (and two turns of the event loop) per read; the console makes many.
        self._read_engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine, begin="BEGIN IMMEDIATE")
            self._read_engine = create_async_engine(self.url, **kwargs)
            _configure_sqlite(self._read_engine, begin="BEGIN")
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._read_sessions = async_sessionmaker(
            self._read_engine, class_=AsyncSession, expire_on_commit=False
        )
        # SQLite has one writer at a time. Queueing our own writers here, in order, is far
        # faster than letting them collide and poll: SQLite's busy handler sleeps up to 100 ms
        # between tries. (Other processes, e.g. the CLI, still fall back on busy_timeout.)
        self._sqlite_writer: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        self._sqlite_thread: ThreadPoolExecutor | None = None  # started by write_sqlite
        self._sqlite_connection: sqlite3.Connection | None = None  # opened, used and closed there

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.

        Do not open one transaction inside another: on SQLite that would wait on itself.
        """
        if self._sqlite_writer is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._sqlite_writer, self._sessions() as session, session.begin():
            yield session

    async def write_sqlite(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one write transaction on SQLite, in one trip to a thread of its own,
        on a plain sqlite3 connection (same pragmas), queued with every other writer.

        For the one hot path that needs it: the inbox's batches, which every SMTP 250 waits
        for. Through SQLAlchemy and aiosqlite a batch takes about ten trips to the driver's
        thread, and during a burst of mail each trip waits behind the SMTP sessions on the
        event loop."""
        assert self._sqlite_writer is not None, "SQLite only"
        async with self._sqlite_writer:
            if self._sqlite_thread is None:
                self._sqlite_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._sqlite_thread, self._in_transaction, work)

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._sqlite_connection is None:
            self._sqlite_connection = _connect_sqlite(self.url.database or "")
        connection = self._sqlite_connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session that never queues behind writers. Do not write through it."""
        async with self._read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading_connection(self) -> AsyncIterator[AsyncConnection]:
        """`reading()` as a plain Core connection, for statements of columns: no ORM session
        to make, begin and close (0.44 ms of CPU a read against 0.26 on PostgreSQL)."""
        async with self._read_engine.connect() as connection:
            yield connection

    async def read_each(self, *reads: Callable[[AsyncSession], Awaitable[Any]]) -> list[Any]:
        """Independent reads, their results in order. On PostgreSQL each has a connection of
        its own and all go at once: one wait for the server instead of one per read (the
        console's pages wait for each other's turns of the event loop after every answer).
        Reads there are autocommit, each statement with its own snapshot, so nothing is
        less consistent than one after another. On SQLite they run in turn in one read
        transaction (one snapshot), as before."""
        if self.is_sqlite or len(reads) < 2:
            async with self.reading() as session:
                return [await read(session) for read in reads]

        async def alone(read: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
            async with self.reading() as session:
                return await read(session)

        return list(await asyncio.gather(*(alone(read) for read in reads)))

    async def has_schema(self) -> bool:
        """Whether this database holds a desk (was ever migrated)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to run from several replicas)."""
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(_upgrade_to_head)

    async def dispose(self) -> None:
        if self._sqlite_thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._sqlite_thread, self._close_sqlite)
            self._sqlite_thread.shutdown()
            self._sqlite_thread = None
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()

    def _close_sqlite(self) -> None:
        if self._sqlite_connection is not None:
            self._sqlite_connection.close()
            self._sqlite_connection = None


# A connection back in the pool for less than this is not checked before its next use.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled connection before use only when it sat idle (HikariCP's bypass window).

    SQLAlchemy's `pool_pre_ping` checks every checkout, and with asyncpg outside autocommit its
    check is three round trips (BEGIN, an empty query, ROLLBACK): at twenty console pages at
    once that was most of a page's round trips. A connection used a moment ago is as alive as
    the check would show; one that died since (the server restarted within the window) fails
    its query, and SQLAlchemy then discards the pool's connections, as after any disconnect.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["rd_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("rd_idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # new, or used a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:  # gone: the pool replaces it and checks out another
            raise DisconnectionError("the pooled connection is gone") from exc


def _connect_sqlite(path: str) -> sqlite3.Connection:
    """A plain connection with the pragmas every connection of ours has (`_configure_sqlite`)."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    for pragma in _SQLITE_PRAGMAS:
        connection.execute(pragma)
    # Checkpoints (copying the WAL into the database file, with an fsync) are left to the
    # other connections, which commit when routing: not in the middle of a burst of 250s.
    connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # a 250 promises the message survives power loss
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: AsyncEngine, begin: str) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over.
    # Writers begin IMMEDIATE so two of them queue on the lock instead of deadlocking on a
    # read-to-write upgrade; readers begin DEFERRED.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to aiosqlite: one trip to its thread, where exec_driver_sql takes three
        # (open a cursor, execute, close). Every write transaction starts here.
        driver = conn.connection.dbapi_connection
        assert driver is not None
        driver.run_async(lambda aio: aio.execute(begin))
