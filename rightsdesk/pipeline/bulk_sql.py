"""The SQL of bulk opening (rightsdesk.pipeline.bulk): the batch's lookups, one query each,
and its rows, one INSERT a table, their ids known before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlmodel import SQLModel, col, func, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.models import (
    ACTIVE_STATUSES,
    ContactKind,
    Requester,
    RequesterContact,
    Ticket,
    TicketType,
)


@dataclass(frozen=True)
class Active:
    """An active ticket of a requester: the same request again joins it, one like it is
    linked to it."""

    id: int
    merged_into: int | None
    types: frozenset[str]


async def requesters_of(
    session: AsyncSession, senders: set[str]
) -> dict[str, tuple[int, str | None]]:
    """Requester id and language by email address."""
    if not senders:
        return {}
    found = await session.exec(
        select(RequesterContact.value, Requester.id, Requester.language)
        .join(Requester, col(Requester.id) == col(RequesterContact.requester_id))
        .where(RequesterContact.kind == ContactKind.EMAIL)
        .where(col(RequesterContact.value).in_(sorted(senders)))
    )
    return {value: (rid, language) for value, rid, language in found.all() if rid is not None}


async def active_of(session: AsyncSession, requester_ids: set[int]) -> dict[int, list[Active]]:
    """Each requester's active tickets, oldest first, with their types."""
    if not requester_ids:
        return {}
    found = await session.exec(
        select(Ticket.id, Ticket.requester_id, Ticket.merged_into, TicketType.type)
        .join(TicketType, col(TicketType.ticket_id) == col(Ticket.id))
        .where(col(Ticket.requester_id).in_(sorted(requester_ids)))
        .where(col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES]))
        .order_by(col(Ticket.id))
    )
    types: dict[int, set[str]] = {}
    owners: dict[int, tuple[int, int | None]] = {}
    for ticket_id, requester_id, merged_into, kind in found.all():
        assert ticket_id is not None
        types.setdefault(ticket_id, set()).add(kind)
        owners[ticket_id] = (requester_id, merged_into)
    by_requester: dict[int, list[Active]] = {}
    for ticket_id in sorted(owners):
        requester_id, merged_into = owners[ticket_id]
        by_requester.setdefault(requester_id, []).append(
            Active(ticket_id, merged_into, frozenset(types[ticket_id]))
        )
    return by_requester


async def insert_rows(
    session: AsyncSession,
    model: type[SQLModel],
    rows: Sequence[SQLModel] | Sequence[dict[str, Any]],
    ids: bool = True,
) -> list[int]:
    """One INSERT for all `rows` (objects, or their values: every column but the id); with
    `ids`, each object is given its id first (`new_ids`)."""
    if not rows:
        return []
    table: Table = model.__table__  # type: ignore[attr-defined]
    if isinstance(rows[0], dict):
        assert not ids
        connection = await session.connection()
        await connection.execute(insert(table), list(cast("Sequence[dict[str, Any]]", rows)))
        return []
    objects = cast("Sequence[SQLModel]", rows)
    given = await new_ids(session, table, len(rows)) if ids else []
    for row, row_id in zip(objects, given, strict=False):
        row.id = row_id
    values = [
        {c.name: getattr(row, c.key) for c in table.columns if c.key != "id" or given}
        for row in objects
    ]
    connection = await session.connection()
    await connection.execute(insert(table), values)
    return given


async def new_ids(session: AsyncSession, table: Table, n: int) -> list[int]:
    """`n` ids for new rows of `table`, known before the INSERT, so that one executemany
    writes them all (an INSERT ... RETURNING of many rows is one statement per row on
    SQLite when the ids must come back in order). PostgreSQL: from the column's sequence,
    as its default would take them. SQLite: after the largest, which stays ours: the batch
    holds the one write lock (BEGIN IMMEDIATE) until it commits."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        found = await connection.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": n},
        )
        return [int(row_id) for (row_id,) in found.all()]
    largest = (
        await connection.execute(select(func.coalesce(func.max(table.c.id), 0)))
    ).scalar_one()
    return list(range(int(largest) + 1, int(largest) + 1 + n))
