"""The console's queues and filters, read from a query string, shared by pages, API and CSV.

A value that cannot be read is a `BadFilter` naming the parameter, never silently ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rightsdesk.models import ACTIVE_STATUSES, Channel, RequestType, Ticket, TicketStatus
from rightsdesk.staff import Staff
from rightsdesk.tickets import TicketFilter, TicketService

QUEUES = ("triage", "mine", "unassigned", "due_soon", "overdue", "waiting", "all")
DUE_SOON_WORKING_DAYS = 5
FILTER_PARAMS = ("queue", "status", "type", "channel", "assignee", "from", "to", "page")


class BadFilter(ValueError):
    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"filter {name!r}: {value!r} is not {expected}")
        self.name = name
        self.value = value


@dataclass(frozen=True)
class Query:
    queue: str
    filters: TicketFilter
    page: int
    params: dict[str, str]  # the filters as given, to build links (pages, CSV) from


def queue_filter(tickets: TicketService, queue: str, me: Staff) -> TicketFilter:
    active = tuple(ACTIVE_STATUSES)
    today = tickets.today()
    if queue == "triage":
        return TicketFilter(statuses=active, needs_review=True)
    if queue == "mine":
        return TicketFilter(statuses=active, assignee=me.name)
    if queue == "unassigned":
        return TicketFilter(statuses=active, unassigned=True)
    if queue == "due_soon":
        limit, _ = tickets.policy.calendar.add_working_days(today, DUE_SOON_WORKING_DAYS)
        return TicketFilter(
            statuses=active, due_from=today, due_before=limit + dt.timedelta(days=1)
        )
    if queue == "overdue":
        # Overdue means active; saying so keeps the finished tickets out of the query entirely.
        return TicketFilter(statuses=active, overdue=True)
    if queue == "waiting":
        return TicketFilter(statuses=(TicketStatus.AWAITING_VERIFICATION,))
    return TicketFilter()


def parse_query(
    tickets: TicketService, params: Mapping[str, str], me: Staff, page_size: int
) -> Query:
    unknown = sorted(set(params) - set(FILTER_PARAMS) - {"format"})
    if unknown:
        raise BadFilter(unknown[0], params[unknown[0]], "a known filter")
    queue = params.get("queue") or "all"
    if queue not in QUEUES:
        raise BadFilter("queue", queue, "one of " + ", ".join(QUEUES))
    base = queue_filter(tickets, queue, me)
    changes: dict[str, Any] = {"active_first": True}
    if value := params.get("status"):
        statuses = tuple(_enum(TicketStatus, "status", v) for v in _split(value))
        changes["statuses"] = statuses
    if value := params.get("type"):
        changes["types"] = tuple(_enum(RequestType, "type", v) for v in _split(value))
    if value := params.get("channel"):
        changes["channels"] = tuple(_enum(Channel, "channel", v) for v in _split(value))
    if value := params.get("assignee"):
        changes["assignee"] = value.strip()
    if value := params.get("from"):
        changes["received_from"] = _date("from", value)
    if value := params.get("to"):
        changes["received_to"] = _date("to", value)
    page = 1
    if value := params.get("page"):
        if not value.isdigit() or int(value) < 1:
            raise BadFilter("page", value, "a page number (1, 2, ...)")
        page = int(value)
    changes["limit"] = page_size
    changes["offset"] = (page - 1) * page_size
    kept = {k: v for k, v in params.items() if k in FILTER_PARAMS and k != "page" and v}
    return Query(queue, dataclasses.replace(base, **changes), page, kept)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _enum(kind: Any, name: str, value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise BadFilter(name, value, "one of " + ", ".join(m.value for m in kind)) from None


def _date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadFilter(name, value, "a date like 2026-11-30") from None


# Counts are shown on every page (seven queues in the navigation, and the list's total); at a
# million tickets the largest take tens of milliseconds each. Several people share the queues,
# so a count is reused for `console.count_cache_seconds`: the navigation may lag that much.
_counts: dict[tuple[int, str], tuple[float, int]] = {}
# One query per count at a time: when a count expires, the requests that want it meanwhile wait
# for the one already running instead of each starting the same scan (at a million tickets,
# twenty clients did).
_running: dict[tuple[int, str], asyncio.Task[int]] = {}


async def cached_count(tickets: TicketService, filters: TicketFilter, ttl: float) -> int:
    """The count, reused for `ttl` seconds. Once a count is known, an expired one is still
    answered at once while a fresh one is computed in the background (the navigation lags by
    one computation, never waits for it); only the very first count of a list is waited for."""
    key = (id(tickets), repr(dataclasses.replace(filters, offset=0, limit=None)))
    hit = _counts.get(key)
    fresh = hit is not None and time.monotonic() - hit[0] < ttl
    if fresh and hit is not None:
        return hit[1]
    task = _running.get(key)
    if task is None:
        task = asyncio.ensure_future(tickets.count(filters))
        _running[key] = task
        task.add_done_callback(lambda done: _counted(key, done))
    if hit is not None and ttl > 0:
        return hit[1]
    return await asyncio.shield(task)


def _counted(key: tuple[int, str], task: asyncio.Task[int]) -> None:
    _running.pop(key, None)
    if task.cancelled() or task.exception() is not None:
        return
    if len(_counts) > 10_000:
        _counts.clear()
    _counts[key] = (time.monotonic(), task.result())


async def queue_counts(tickets: TicketService, me: Staff, ttl: float) -> dict[str, int]:
    return {q: await cached_count(tickets, queue_filter(tickets, q, me), ttl) for q in QUEUES}


def working_days_left(tickets: TicketService, ticket: Ticket) -> int | None:
    """The digest's count: working days to the response due date; negative when late."""
    if ticket.response_due is None or TicketStatus(ticket.status) not in ACTIVE_STATUSES:
        return None
    return tickets.policy.calendar.working_days_left(tickets.today(), ticket.response_due)
