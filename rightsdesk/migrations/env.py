"""Alembic environment. Normally driven by rightsdesk.db.Database.migrate with a connection."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

# Each registers its tables on SQLModel.metadata: all of them, or autogenerate and the
# comparison would see the others' tables as ones to drop.
import rightsdesk.models
import rightsdesk.models_fulfilment
import rightsdesk.models_staff
from rightsdesk.config import load_settings

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=rightsdesk.models.modelled,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_async_engine(load_settings().database.url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    # `alembic` run by hand (e.g. `alembic revision --autogenerate`), with $RIGHTSDESK_CONFIG.
    asyncio.run(_run_with_own_engine())
