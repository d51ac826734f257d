"""The company's user directory, as far as the desk needs it: who owns which account.

The desk does not own these accounts; it imports them (`rightsdesk accounts import`) so that
verification can check a requester against the registered contact points.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.db import Database
from rightsdesk.models import Account

REQUIRED_COLUMNS = ("account_id", "email")
OPTIONAL_COLUMNS = ("phone", "name", "username")
BATCH_SIZE = 1000


class AccountImportError(Exception):
    pass


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    # (line number, reason): never the row itself, which is personal data.
    rejected: list[tuple[int, str]] = field(default_factory=list)


class AccountDirectory:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def import_csv(
        self, path: Path, progress: Callable[[int], None] | None = None
    ) -> ImportReport:
        """Insert or update every valid row of `path`; invalid rows are reported, not fatal."""
        report = ImportReport()
        batch: dict[str, dict[str, Any]] = {}
        for line, row in _read_rows(path):
            report.rows += 1
            reason = _invalid(row)
            if reason:
                report.rejected.append((line, reason))
                continue
            batch[row["account_id"]] = self._values(row)
            if len(batch) >= BATCH_SIZE:
                report.imported += await self._upsert(list(batch.values()))
                batch.clear()
                if progress:
                    progress(report.rows)
        if batch:
            report.imported += await self._upsert(list(batch.values()))
        if progress:
            progress(report.rows)
        return report

    def _values(self, row: dict[str, str]) -> dict[str, Any]:
        return {
            "id": row["account_id"],
            "email": row["email"].lower(),
            "phone": row.get("phone") or None,
            "name": row.get("name") or None,
            "username": row.get("username") or None,
            "updated_at": self.clock.now(),
        }

    async def _upsert(self, rows: list[dict[str, Any]]) -> int:
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        statement = insert(Account).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={
                name: statement.excluded[name]
                for name in ("email", "phone", "name", "username", "updated_at")
            },
        )
        async with self.db.transaction() as session:
            await session.exec(statement)
        return len(rows)

    async def find_by_email(self, email: str) -> Account | None:
        async with self.db.transaction() as session:
            return await self.find_registered(session, email)

    async def find_registered(self, session: AsyncSession, email: str) -> Account | None:
        """The imported account registered to `email`, inside the caller's transaction."""
        query = select(Account).where(Account.email == email.strip().lower())
        return (await session.exec(query)).first()

    async def find_registered_many(
        self, session: AsyncSession, emails: Collection[str]
    ) -> dict[str, Account]:
        """`find_registered` for many addresses in one query (the pipeline's batches)."""
        wanted = sorted({email.strip().lower() for email in emails})
        if not wanted:
            return {}
        found = await session.exec(select(Account).where(col(Account.email).in_(wanted)))
        accounts: dict[str, Account] = {}
        for account in found.all():
            accounts.setdefault(account.email, account)  # as `first()` would, one each
        return accounts

    async def find_by_username(self, session: AsyncSession, username: str) -> Account | None:
        """The imported account with this username (case as registered, or lower-cased)."""
        wanted = username.strip()
        query = select(Account).where(col(Account.username).in_({wanted, wanted.lower()}))
        return (await session.exec(query)).first()

    async def browse(self, limit: int | None = None) -> list[Account]:
        async with self.db.transaction() as session:
            query = select(Account).order_by(col(Account.id)).limit(limit)
            return list((await session.exec(query)).all())

    async def count(self) -> int:
        async with self.db.transaction() as session:
            return (await session.exec(select(func.count()).select_from(Account))).one()


class CompanyDirectory:
    """Accounts looked up live in the company's own database with a configured read-only
    query; each hit is copied into the local `account` table, which verification refers to."""

    def __init__(self, url: str, query: str, clock: Clock, username_query: str = "") -> None:
        self.engine = create_async_engine(url, pool_pre_ping=True)
        self.query = text(query)
        self.username_query = text(username_query) if username_query else None
        self.clock = clock

    async def find_registered(self, session: AsyncSession, email: str) -> Account | None:
        wanted = email.strip().lower()
        account = await self._copy(session, self.query, {"email": wanted})
        # Trust only a row that really is registered to this address.
        return account if account is not None and account.email == wanted else None

    async def find_registered_many(
        self, session: AsyncSession, emails: Collection[str]
    ) -> dict[str, Account]:
        """One live lookup per address: the company's query takes one address."""
        found: dict[str, Account] = {}
        for email in sorted({e.strip().lower() for e in emails}):
            account = await self.find_registered(session, email)
            if account is not None:
                found[email] = account
        return found

    async def find_by_username(self, session: AsyncSession, username: str) -> Account | None:
        if self.username_query is None:
            return None
        return await self._copy(session, self.username_query, {"username": username.strip()})

    async def _copy(
        self, session: AsyncSession, query: TextClause, params: dict[str, str]
    ) -> Account | None:
        """Run a lookup read-only in the company's database; copy the hit into `account`."""
        async with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # A query that tried to write would fail here, not change the company's data.
                await conn.execute(text("SET TRANSACTION READ ONLY"))
            row = (await conn.execute(query, params)).first()
        if row is None:
            return None
        found = row._mapping
        account = await session.get(Account, str(found["account_id"]))
        if account is None:
            account = Account(id=str(found["account_id"]), email="")
        account.email = str(found["email"]).strip().lower()
        for name in ("phone", "name", "username"):
            if name in found:
                setattr(account, name, found[name])
        account.updated_at = self.clock.now()
        session.add(account)
        await session.flush()
        return account

    async def dispose(self) -> None:
        await self.engine.dispose()


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AccountImportError(f"cannot read {path}: {exc.strerror}") from None
    # Spreadsheet exports here are UTF-8 (often with a BOM) or GB18030/GBK.
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise AccountImportError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    reader.fieldnames = header
    for row in reader:
        clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
        yield reader.line_num, clean


def _invalid(row: dict[str, str]) -> str | None:
    if not row.get("account_id"):
        return "empty account_id"
    email = row.get("email", "")
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or any(ch.isspace() for ch in email):
        return "not an email address in column email"
    if len(row["account_id"]) > 128:
        return "account_id longer than 128 characters"
    return None
