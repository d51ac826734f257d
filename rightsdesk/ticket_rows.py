"""A ticket as a listing shows it: plain values read as Core rows, not ORM entities.

A queue page shows fifty tickets and changes none of them. Loading them as `Ticket` entities
(identity map, instance state, SQLModel's pydantic set-up, the types joined in and grouped)
was the largest Python cost of the console's queue pages at a million tickets; a row of the
columns a listing shows, with the types aggregated in the same statement, costs a fraction.
`TicketRow` has the attribute names of `Ticket`, so the views (rightsdesk.views) take either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from rightsdesk.models import RequestType, Ticket, TicketType


@dataclass(frozen=True, slots=True)
class TicketRow:
    """A ticket's listing fields, read only, named as `Ticket` names them."""

    id: int | None
    public_id: str
    status: str
    channel: str
    contact_kind: str
    contact_value: str
    subject: str | None
    language: str | None
    received_at: dt.datetime
    response_due: dt.date | None
    completion_due: dt.date | None
    deadlines_provisional: bool
    needs_review: bool
    classification: dict[str, Any] | None
    assignee: str | None
    verification: str | None
    unread: bool
    unread_since: dt.datetime | None
    suggested_types: list[str]
    duplicate_of: int | None
    merged_into: int | None
    withdrawal_final_at: dt.datetime | None
    audit_head: str
    types: list[RequestType]


# What a view of a ticket in a list takes: the entity, or its listing row.
TicketFields = Ticket | TicketRow

# The columns in `TicketRow`'s order (all but the types, aggregated after them).
_COLUMNS = [Ticket.__table__.c[name] for name in TicketRow.__slots__ if name != "types"]  # type: ignore[attr-defined]
_make: Callable[..., TicketRow] = TicketRow  # positional, in the columns' order
_SUGGESTED = TicketRow.__slots__.index("suggested_types")
_TYPE_ORDER = {t.value: n for n, t in enumerate(RequestType)}
_TYPES = {t.value: t for t in RequestType}


@cache
def row_select(sqlite: bool) -> Any:
    """A SELECT of the listing columns from the ticket table, its types as one comma-joined
    value (a subquery per row returned: evaluated for the page's rows only, after the LIMIT).
    Built once: a statement is never changed in place (`.where` makes a new one), and
    building the subquery's columns again for every page was a cost of its own."""
    kind = col(TicketType.type)
    types = select(kind).where(col(TicketType.ticket_id) == col(Ticket.id))
    joined = func.group_concat(kind, ",") if sqlite else func.string_agg(kind, ",")
    aggregated = types.with_only_columns(joined).scalar_subquery()
    return select(*_COLUMNS, aggregated.label("types"))


def ticket_row(values: Any) -> TicketRow:
    """A `TicketRow` from a row of `row_select`."""
    *fields, joined = values
    names = joined.split(",") if joined else []
    # In the enum's order, as `Ticket.types` gives them.
    types = [_TYPES[n] for n in sorted(set(names), key=_TYPE_ORDER.__getitem__) if n in _TYPES]
    fields[_SUGGESTED] = list(fields[_SUGGESTED] or [])  # JSON: a list, never None
    return _make(*fields, types)
