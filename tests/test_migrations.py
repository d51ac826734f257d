"""Migrations and models agree, and migrating is idempotent, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from rightsdesk.models import modelled
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
