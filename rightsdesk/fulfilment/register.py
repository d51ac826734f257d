"""The register of the company's systems: what `[[systems]]` configures, a connection to each
SQL system, the verified account's values a statement may bind, and `systems check`."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, TextClause, bindparam, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from rightsdesk.config import Settings, system_url_variable
from rightsdesk.config_systems import SYSTEM_PARAMETERS, SystemSettings, statement_parameters
from rightsdesk.tickets import TicketError

# The async drivers we reach a company's database with. MySQL needs aiomysql installed.
ASYNC_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg", "mysql+aiomysql")


class FulfilmentError(TicketError):
    """A fulfilment request the rules refuse; one line for the person who asked."""


def error_line(exc: BaseException) -> str:
    """An exception as one line, without the driver's detail (which may quote parameters)."""
    message = str(getattr(exc, "orig", None) or exc)
    return (message.splitlines()[0] if message else type(exc).__name__)[:500]


@dataclass(frozen=True)
class Identity:
    """The verified account's values: the only things a statement may bind. All text: a
    statement casts where its column is numeric (`CAST(:account_id AS BIGINT)`)."""

    account_id: str
    email: str | None
    phone: str | None
    username: str | None
    pseudonym: str

    def params(self, sql: str) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in SYSTEM_PARAMETERS}
        return {name: values[name] for name in statement_parameters(sql)}

    def missing(self, sql: str) -> list[str]:
        return sorted(n for n, v in self.params(sql).items() if v is None)


# An identity nobody has: `systems check` runs every statement with it, then rolls back.
IMPOSSIBLE = Identity(
    account_id="-1",
    email="nobody@rightsdesk.invalid",
    phone="+0",
    username="-rightsdesk-check-",
    pseudonym="0" * 32,
)


def pseudonym(key: bytes, account_id: str) -> str:
    """A keyed hash of the account id: the same in every system (anonymised rows still join
    each other), and nobody without the desk's key can compute it from the id."""
    return hmac.new(key, f"pseudonym\n{account_id}".encode(), hashlib.sha256).hexdigest()[:32]


def statement_body(sql: str) -> str:
    return sql.strip().rstrip(";").strip()


def bound(sql: str) -> TextClause:
    """The statement with each parameter typed as text. asyncpg otherwise infers a
    parameter's type from the statement (bigint beside `CAST(:account_id AS BIGINT)`) and
    refuses the string; typed, it is sent as text and the statement's CAST converts it."""
    body = statement_body(sql)
    names = sorted(statement_parameters(body))
    return text(body).bindparams(*(bindparam(n, type_=String()) for n in names))


class SystemRegister:
    """The configured systems and one lazily created engine per SQL system."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, AsyncEngine] = {}

    @property
    def systems(self) -> list[SystemSettings]:
        return list(self.settings.systems)

    def engine(self, system: SystemSettings) -> AsyncEngine:
        if system.name in self._engines:
            return self._engines[system.name]
        url = self.settings.system_url(system.name)
        if not url:
            raise FulfilmentError(
                f"systems[{system.name}]: no database URL; set "
                f"{system_url_variable(system.name)} or systems.url_file"
            )
        try:
            parsed = make_url(url)
        except SQLAlchemyError:
            raise FulfilmentError(f"systems[{system.name}]: the URL is not valid") from None
        if parsed.drivername not in ASYNC_DRIVERS:
            raise FulfilmentError(
                f"systems[{system.name}]: driver {parsed.drivername!r} is not async; use one of "
                + ", ".join(ASYNC_DRIVERS)
            )
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() != "sqlite":
            kwargs["pool_size"] = 2
        engine = create_async_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            _explicit_sqlite_transactions(engine)
        self._engines[system.name] = engine
        return engine

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for system in self.systems:
            url_set = bool(system.kind == "manual" or self.settings.system_url(system.name))
            rows.append(
                {
                    "name": system.name,
                    "kind": system.kind,
                    "owner_emails": system.owner_emails,
                    "display_names": system.display_names,
                    "url_configured": url_set,
                    "statements": {
                        action: [s.name for s in getattr(system, action)]
                        for action in (
                            "access",
                            "erasure",
                            "account_deletion",
                            "withdraw_consent",
                            "restriction",
                        )
                        if getattr(system, action)
                    },
                }
            )
        return rows

    async def check(self) -> list[str]:
        """Every problem, one line each: connect, then run each statement on an impossible
        identity inside a transaction that is rolled back."""
        problems: list[str] = []
        for system in self.systems:
            if system.kind == "manual":
                if not system.owner_emails:
                    problems.append(f"systems[{system.name}]: a manual system needs owner_emails")
                continue
            try:
                engine = self.engine(system)
            except FulfilmentError as exc:
                problems.append(str(exc))
                continue
            try:
                async with engine.connect() as conn:
                    problems += await _check_statements(conn, system)
                    problems += await _check_ledger(conn, system, self.settings)
            except (OSError, SQLAlchemyError) as exc:
                problems.append(f"systems[{system.name}]: cannot connect: {error_line(exc)}")
        return problems

    async def dispose(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
        self._engines.clear()


async def _check_statements(conn: AsyncConnection, system: SystemSettings) -> list[str]:
    problems = []
    for action, statement in system.statements():
        where = f"systems[{system.name}].{action}[{statement.name}]"
        body = statement_body(statement.sql)
        transaction = await conn.begin()
        try:
            result = await conn.execute(bound(body), IMPOSSIBLE.params(body))
            if action == "access":
                returned = set(result.keys())
                unknown = sorted(set(statement.columns) - returned)
                if unknown:
                    problems.append(
                        f"{where}: columns names {', '.join(unknown)}, which the query "
                        "does not return"
                    )
                result.close()
        except SQLAlchemyError as exc:
            problems.append(f"{where}: {error_line(exc)}")
        finally:
            await transaction.rollback()
    return problems


async def _check_ledger(
    conn: AsyncConnection, system: SystemSettings, settings: Settings
) -> list[str]:
    table = settings.fulfilment.ledger_table
    if not table or not system.statements(
        ("erasure", "account_deletion", "withdraw_consent", "restriction")
    ):
        return []
    transaction = await conn.begin()
    try:
        await create_ledger(conn, table)
    except SQLAlchemyError as exc:
        return [
            f"systems[{system.name}]: cannot create the ledger table {table} "
            f"(fulfilment.ledger_table): {error_line(exc)}"
        ]
    finally:
        await transaction.rollback()
    return []


async def create_ledger(conn: AsyncConnection, table: str) -> None:
    # Portable DDL (PostgreSQL, SQLite, MySQL); the name is checked by the settings.
    await conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "step_key VARCHAR(100) PRIMARY KEY, counts TEXT NOT NULL, "
            "applied_at VARCHAR(40) NOT NULL)"
        )
    )


def _explicit_sqlite_transactions(engine: AsyncEngine) -> None:
    """pysqlite begins transactions itself, only before writes; take that over so a rolled-back
    dry run and a run's statements are one transaction from their first statement. No pragma
    of ours is set: the database is the company's."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
