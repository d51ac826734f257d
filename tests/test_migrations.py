"""Migrations and models agree, and migrating is idempotent, on both databases."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel, select

from rightsdesk.db import alembic_config
from rightsdesk.models import Channel, Message, modelled
from rightsdesk.service import Desk


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": modelled}
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def test_migrated_schema_matches_the_models(desk: Desk) -> None:
    async with desk.db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_migrate_twice_is_a_no_op(desk: Desk) -> None:
    await desk.db.migrate()
    await desk.db.migrate()
    async with desk.db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_0017_gives_messages_stored_before_raw_size_their_size(desk: Desk) -> None:
    # A message of 0002's days: its bytes kept, their size 0. Pages no longer load the bytes.
    async with desk.db.transaction() as session:
        old = Message(direction="in", channel=Channel.EMAIL, raw=b"x" * 321, raw_size=0)
        new = Message(direction="in", channel=Channel.EMAIL, raw=b"y" * 5, raw_size=5)
        bare = Message(direction="in", channel=Channel.TELEGRAM, raw=None, raw_size=0)
        session.add_all([old, new, bare])
    async with desk.db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0016"))
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
    async with desk.db.reading() as session:
        sizes = {m.channel + str(m.raw_size) for m in (await session.exec(select(Message))).all()}
    assert sizes == {"email321", "email5", "telegram0"}
