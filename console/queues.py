"""The console's queues and filters, read from a query string, shared by pages, API and CSV.

A value that cannot be read is a `BadFilter` naming the parameter, never silently ignored.
`q` is the desk's search (rightsdesk.search: an id, an address, a phone, a name, words): its
hits narrow the list, and the queue and filters still apply to them.

At a million tickets no count is exact for free: the navigation's queues are counted in one
grouped query over the active tickets (plus the unread flag's index), and any count past
`COUNT_CAP` stops there ("10,000+"); pages go no further than that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rightsdesk.models import ACTIVE_STATUSES, Channel, RequestType, TicketStatus
from rightsdesk.search import Hits, TicketSearch
from rightsdesk.staff import Staff
from rightsdesk.ticket_rows import TicketFields
from rightsdesk.tickets import TicketError, TicketFilter, TicketService

QUEUES = ("triage", "unread", "mine", "unassigned", "due_soon", "overdue", "waiting", "all")
# The queues inside the active tickets, counted together in one query.
ACTIVE_QUEUES = ("triage", "mine", "unassigned", "due_soon", "overdue", "waiting")
DUE_SOON_WORKING_DAYS = 5
FILTER_PARAMS = ("queue", "status", "type", "channel", "assignee", "from", "to", "page", "q")
COUNT_CAP = 10_000  # counting stops past this; a list pages no further
SEARCH_LIMIT = 200  # the newest hits of a search; the filters then apply to them
MAX_QUERY_CHARS = 200


# How much of a refused parameter's name and value an error repeats: enough to recognise it;
# a 60 KB value made a 61 KB error page.
SHOWN_FILTER_CHARS = 40


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_FILTER_CHARS else text[:SHOWN_FILTER_CHARS] + "…"


class BadFilter(ValueError):
    def __init__(self, name: str, value: str, expected: str) -> None:
        name, value = _cut(name), _cut(value)
        super().__init__(f"filter {name!r}: {value!r} is not {expected}")
        self.name = name
        self.value = value


@dataclass(frozen=True)
class Query:
    queue: str
    filters: TicketFilter
    page: int
    params: dict[str, str]  # the filters as given, to build links (pages, CSV) from
    search: str = ""  # `q`: what to search for, or nothing


@dataclass(frozen=True)
class Listing:
    """A query with its search done: the filters (narrowed to the hits), and for each hit
    what matched (id, email, phone, name, account, text) and where (`Hits`)."""

    filters: TicketFilter
    hits: Hits | None = None

    @property
    def matched(self) -> dict[int, list[str]]:
        return self.hits.matched if self.hits is not None else {}

    def snippets(self, shown: Sequence[TicketFields]) -> dict[int, str]:
        """Where the words matched, for the tickets a page shows (not for every hit)."""
        if self.hits is None:
            return {}
        return self.hits.snippets(t.id for t in shown if t.id is not None)


def queue_filter(tickets: TicketService, queue: str, me: Staff) -> TicketFilter:
    active = tuple(ACTIVE_STATUSES)
    today = tickets.today()
    if queue == "triage":
        return TicketFilter(statuses=active, needs_review=True)
    if queue == "unread":  # the requester wrote since a person last acted (finished too)
        return TicketFilter(unread=True)
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
        last = max_page(page_size)
        if page > last:
            raise BadFilter("page", value, f"at most {last} (narrow the filters to see further)")
    search = " ".join(params.get("q", "").split())
    if len(search) > MAX_QUERY_CHARS:
        raise BadFilter("q", search[:20] + "…", f"at most {MAX_QUERY_CHARS} characters")
    changes["limit"] = page_size
    changes["offset"] = (page - 1) * page_size
    kept = {k: v for k, v in params.items() if k in FILTER_PARAMS and k != "page" and v}
    return Query(queue, dataclasses.replace(base, **changes), page, kept, search)


def max_page(page_size: int) -> int:
    return max(1, -(-COUNT_CAP // page_size))


async def narrowed(search: TicketSearch | None, query: Query) -> Listing:
    """The query with its search done: the filters limited to the newest SEARCH_LIMIT hits."""
    if not query.search:
        return Listing(query.filters)
    if search is None:
        raise BadFilter("q", query.search, "searchable on this desk (no search service)")
    try:
        hits = await search.matches(query.search, SEARCH_LIMIT)
    except TicketError as exc:
        raise BadFilter("q", query.search, str(exc)) from None
    return Listing(dataclasses.replace(query.filters, ids=tuple(hits.matched)), hits)


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


# Counts are shown on every page (the queues in the navigation, and the list's total). Several
# people share the queues, so a count is reused for `console.count_cache_seconds`: the
# navigation may lag that much.
_counts: dict[str, tuple[float, Any]] = {}
# One query per count at a time: when a count expires, the requests that want it meanwhile wait
# for the one already running instead of each starting the same scan (at a million tickets,
# twenty clients did).
_running: dict[str, asyncio.Task[Any]] = {}


async def cached_count(
    tickets: TicketService, filters: TicketFilter, ttl: float, cap: int | None = None
) -> int:
    """The count (stopping at `cap`), reused for `ttl` seconds (see `_cached`)."""
    plain = dataclasses.replace(filters, offset=0, limit=None)
    key = f"{id(tickets)}:count:{cap}:{plain!r}"
    counted: int = await _cached(key, lambda: tickets.count(plain, cap=cap), ttl)
    return counted


async def _cached(key: str, make: Callable[[], Awaitable[Any]], ttl: float) -> Any:
    """Once a value is known, an expired one is still answered at once while a fresh one is
    computed in the background (the navigation lags by one computation, never waits for
    it); only the very first value is waited for."""
    hit = _counts.get(key)
    fresh = hit is not None and time.monotonic() - hit[0] < ttl
    if fresh and hit is not None:
        return hit[1]
    task = _running.get(key)
    if task is None:
        task = asyncio.ensure_future(make())
        _running[key] = task
        task.add_done_callback(lambda done: _counted(key, done))
    if hit is not None and ttl > 0:
        return hit[1]
    return await asyncio.shield(task)


def _counted(key: str, task: asyncio.Task[Any]) -> None:
    _running.pop(key, None)
    if task.cancelled() or task.exception() is not None:
        return
    if len(_counts) > 10_000:
        _counts.clear()
    _counts[key] = (time.monotonic(), task.result())


async def queue_counts(tickets: TicketService, me: Staff, ttl: float) -> dict[str, int]:
    """Every queue's count in three queries: the active queues grouped in one pass over the
    active tickets, the unread flag, and everything (capped: above COUNT_CAP it is
    COUNT_CAP + 1)."""
    named = {q: queue_filter(tickets, q, me) for q in ACTIVE_QUEUES}
    active = TicketFilter(statuses=tuple(sorted(ACTIVE_STATUSES)))
    key = f"{id(tickets)}:queues:{named!r}"
    grouped: dict[str, int] = await _cached(key, lambda: tickets.count_each(active, named), ttl)
    unread = await cached_count(tickets, queue_filter(tickets, "unread", me), ttl)
    everything = await cached_count(tickets, TicketFilter(), ttl, cap=COUNT_CAP + 1)
    counts = {**grouped, "unread": unread, "all": everything}
    return {q: counts[q] for q in QUEUES}


def shown_count(count: int) -> str:
    """A count as a page shows it: past the cap, "10,000+"."""
    return f"{COUNT_CAP:,}+" if count > COUNT_CAP else f"{count:,}"


def working_days_left(tickets: TicketService, ticket: TicketFields) -> int | None:
    """The digest's count: working days to the response due date; negative when late."""
    if ticket.response_due is None or TicketStatus(ticket.status) not in ACTIVE_STATUSES:
        return None
    return tickets.policy.calendar.working_days_left(tickets.today(), ticket.response_due)
