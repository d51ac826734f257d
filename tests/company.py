"""A company's own database for the fulfilment tests: a collaboration product (users,
organisations, channel messages, meeting participation, file uploads, login logs, marketing
flags, a newsletter list), created in PostgreSQL or SQLite, with several users; and the
`[[systems]]` of config.example.toml's example, which describes it."""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import REPO, _admin, _pg_url

SCHEMA = [
    """CREATE TABLE organisations (id BIGINT PRIMARY KEY, name TEXT NOT NULL,
       created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE users (id BIGINT PRIMARY KEY, org_id BIGINT REFERENCES organisations(id),
       email TEXT UNIQUE, phone TEXT, username TEXT UNIQUE, display_name TEXT,
       created_at TIMESTAMP NOT NULL, deleted_at TIMESTAMP,
       research_opt_in BOOLEAN NOT NULL DEFAULT FALSE,
       processing_paused BOOLEAN NOT NULL DEFAULT FALSE,
       erasure_count INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE channel_messages (id BIGINT PRIMARY KEY, channel TEXT NOT NULL,
       author_id BIGINT REFERENCES users(id), author_name TEXT, body TEXT,
       sent_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX ix_channel_messages_author_id ON channel_messages (author_id)",
    """CREATE TABLE meeting_participants (meeting_id BIGINT NOT NULL,
       user_id BIGINT NOT NULL REFERENCES users(id), display_name TEXT,
       joined_at TIMESTAMP NOT NULL, left_at TIMESTAMP, PRIMARY KEY (meeting_id, user_id))""",
    "CREATE INDEX ix_meeting_participants_user_id ON meeting_participants (user_id)",
    """CREATE TABLE file_uploads (id BIGINT PRIMARY KEY,
       uploader_id BIGINT NOT NULL REFERENCES users(id), filename TEXT NOT NULL,
       size_bytes BIGINT NOT NULL, storage_key TEXT NOT NULL, uploaded_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX ix_file_uploads_uploader_id ON file_uploads (uploader_id)",
    """CREATE TABLE login_logs (id BIGINT PRIMARY KEY,
       user_id BIGINT NOT NULL REFERENCES users(id), ip TEXT NOT NULL, user_agent TEXT,
       at TIMESTAMP NOT NULL)""",
    "CREATE INDEX ix_login_logs_user_id ON login_logs (user_id)",
    """CREATE TABLE marketing_flags (user_id BIGINT PRIMARY KEY REFERENCES users(id),
       email_opt_in BOOLEAN NOT NULL, sms_opt_in BOOLEAN NOT NULL,
       updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE newsletter_subscribers (email TEXT PRIMARY KEY,
       subscribed_at TIMESTAMP NOT NULL)""",
]

# Who owns each row: the column naming the user (the newsletter is by address).
OWNER = {
    "users": "id",
    "channel_messages": "author_id",
    "meeting_participants": "user_id",
    "file_uploads": "uploader_id",
    "login_logs": "user_id",
    "marketing_flags": "user_id",
    "newsletter_subscribers": "email",
    "organisations": None,
}
ORDER = {
    "organisations": "id",
    "users": "id",
    "channel_messages": "id",
    "meeting_participants": "meeting_id, user_id",
    "file_uploads": "id",
    "login_logs": "id",
    "marketing_flags": "user_id",
    "newsletter_subscribers": "email",
}

USERS = [1001, 1002, 1003, 1004, 1005]
REQUESTER = 1002
T0 = dt.datetime(2026, 1, 5, 9, 0)


def email_of(user: int) -> str:
    return f"user{user}@example.com"


def secret_of(user: int) -> str:
    """A string only this user's rows contain: none may appear in another's export."""
    return f"secret-of-{user}"


def _rows() -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in ORDER}
    rows["organisations"] = [
        {"id": 1, "name": "Haikou Trading", "created_at": T0},
        {"id": 2, "name": "Sanya Design", "created_at": T0},
    ]
    message_id = file_id = login_id = 1
    for n, user in enumerate(USERS):
        rows["users"].append(
            {
                "id": user,
                "org_id": 1 + n % 2,
                "email": email_of(user),
                "phone": f"+86138000{user}",
                "username": f"user{user}",
                "display_name": f"User {user} {secret_of(user)}",
                "created_at": T0,
                "deleted_at": None,
                "research_opt_in": True,
                "processing_paused": False,
                "erasure_count": 0,
            }
        )
        for i in range(4 + n):
            rows["channel_messages"].append(
                {
                    "id": message_id,
                    "channel": f"general-{i % 2}",
                    "author_id": user,
                    "author_name": f"User {user}",
                    "body": f"message {i} {secret_of(user)} 你好",
                    "sent_at": T0 + dt.timedelta(minutes=message_id),
                }
            )
            message_id += 1
        for meeting in range(1, 4):
            if (meeting + n) % 3:
                rows["meeting_participants"].append(
                    {
                        "meeting_id": meeting,
                        "user_id": user,
                        "display_name": f"User {user}",
                        "joined_at": T0 + dt.timedelta(hours=meeting),
                        "left_at": T0 + dt.timedelta(hours=meeting, minutes=45),
                    }
                )
        for i in range(2):
            rows["file_uploads"].append(
                {
                    "id": file_id,
                    "uploader_id": user,
                    "filename": f"{secret_of(user)}-{i}.pdf",
                    "size_bytes": 1000 * file_id,
                    "storage_key": f"files/{user}/{i}",
                    "uploaded_at": T0 + dt.timedelta(days=i),
                }
            )
            file_id += 1
        for i in range(3):
            rows["login_logs"].append(
                {
                    "id": login_id,
                    "user_id": user,
                    "ip": f"10.0.{n}.{i}",
                    "user_agent": f"app/{secret_of(user)}",
                    "at": T0 + dt.timedelta(hours=login_id),
                }
            )
            login_id += 1
        rows["marketing_flags"].append(
            {"user_id": user, "email_opt_in": True, "sms_opt_in": n % 2 == 0, "updated_at": T0}
        )
        rows["newsletter_subscribers"].append({"email": email_of(user), "subscribed_at": T0})
    return rows


ROWS = _rows()


async def create_company(kind: str, tmp_path: Path) -> str:
    """A fresh company database (`kind`: sqlite or postgresql), filled; returns its URL."""
    name = f"company_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
    else:
        await _admin(f'CREATE DATABASE "{name}"')
        url = _pg_url(name)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in SCHEMA:
                await conn.execute(text(statement))
            for table, rows in ROWS.items():
                columns = list(rows[0])
                await conn.execute(
                    text(
                        f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join(':' + c for c in columns)})"
                    ),
                    rows,
                )
    finally:
        await engine.dispose()
    return url


async def drop_company(url: str) -> None:
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def company_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    url = await create_company(kind, tmp_path)
    try:
        yield url
    finally:
        await drop_company(url)


async def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the product, in a stable order, values as text."""
    engine = create_async_engine(url)
    found: dict[str, list[tuple[Any, ...]]] = {}
    try:
        async with engine.connect() as conn:
            for table, order in ORDER.items():
                result = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
                keys = list(result.keys())
                found[table] = [
                    tuple((k, _normal(v)) for k, v in zip(keys, row, strict=True))
                    for row in result.all()
                ]
    finally:
        await engine.dispose()
    return found


def _normal(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return value


def owned_by(table: str, row: tuple[Any, ...], user: int) -> bool:
    column = OWNER[table]
    if column is None:
        return False
    value = dict(row)[column]
    return bool(value == (email_of(user) if column == "email" else user))


def checksum(rows: dict[str, list[tuple[Any, ...]]], *, except_user: int | None) -> str:
    """A SHA-256 over every row not owned by `except_user` (every row when None)."""
    digest = hashlib.sha256()
    for table in sorted(rows):
        for row in rows[table]:
            if except_user is not None and owned_by(table, row, except_user):
                continue
            digest.update(repr((table, row)).encode())
    return digest.hexdigest()


def example_systems() -> list[dict[str, Any]]:
    """The commented `[[systems]]` example of config.example.toml, as settings data."""
    systems: list[dict[str, Any]] = tomllib.loads(example_systems_toml())["systems"]
    return systems


def example_systems_toml() -> str:
    """The same example as TOML text, for a config file."""
    source = (REPO / "config.example.toml").read_text(encoding="utf-8")
    block = source.split("# ---- example: [[systems]] ----\n", 1)[1].split(
        "# ---- end of example ----", 1
    )[0]
    return "\n".join(
        line[2:] if line.startswith("# ") else line.lstrip("#") for line in block.splitlines()
    )
