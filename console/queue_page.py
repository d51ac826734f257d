"""The queue pages: a queue, its filters and the desk's search (`q`), most urgent first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from console import queues
from console.pages import nav_context
from console.queues import (
    BadFilter,
    Listing,
    cached_count,
    max_page,
    narrowed,
    parse_query,
    shown_count,
    working_days_left,
)
from console.web import Console, console_of, error_page, guard, render, session_of
from rightsdesk.models import RequestType, TicketStatus
from rightsdesk.ticket_rows import TicketFields
from rightsdesk.tickets import TicketService
from rightsdesk.views import ticket_summary
from rightsdesk.webstack import Attrs


def queue_items(
    request: Request, listing: Listing, rows: Sequence[TicketFields]
) -> list[dict[str, Any]]:
    """The rows of a queue (pages and API): the listing view, working days left, its version,
    and for a search what matched (id, email, phone, name, account, text) and where."""
    tickets: TicketService = request.app.state.tickets
    snippets = listing.snippets(rows)
    today, tz = tickets.today(), tickets.policy.tz
    return [
        Attrs(
            ticket_summary(ticket, today, tz),
            working_days_left=working_days_left(tickets, ticket),
            head=ticket.audit_head,
            matched=listing.matched.get(ticket.id or 0, []),
            snippet=snippets.get(ticket.id or 0),
        )
        for ticket in rows
    ]


@guard("read", reads_only=True)
async def queue_page(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    console: Console = console_of(request)
    me = session_of(request).staff
    size = console.settings.page_size
    try:
        query = parse_query(tickets, dict(request.query_params), me, size)
        listing = await narrowed(request.app.state.search, query)
    except BadFilter as exc:
        return error_page(request, 400, str(exc))
    ttl = console.settings.count_cache_seconds
    rows = await tickets.rows(listing.filters)
    if len(rows) < size and (rows or query.page == 1):
        # The last page is in hand (a search's few hits, most often): its rows are the count.
        total = (query.page - 1) * size + len(rows)
    else:
        total = await cached_count(tickets, listing.filters, ttl, cap=queues.COUNT_CAP + 1)
    items = queue_items(request, listing, rows)
    pages = min(max(1, -(-min(total, queues.COUNT_CAP) // size)), max_page(size))

    def link(page: int) -> str:
        return "/?" + urlencode({**query.params, "page": str(page)})

    return render(
        request,
        "queue.html.j2",
        {
            **(await nav_context(request)),
            "queue": query.queue,
            "search": query.search,
            "items": items,
            "total": shown_count(total),
            "capped": total > queues.COUNT_CAP,
            "cap": f"{queues.COUNT_CAP:,}",
            "page": query.page,
            "pages": pages,
            "prev_link": link(query.page - 1) if query.page > 1 else "",
            "next_link": link(query.page + 1) if query.page < pages else "",
            "csv_link": "/export.csv?" + urlencode(query.params),
            "params": query.params,
            "statuses": [s.value for s in TicketStatus],
            "types": [t.value for t in RequestType],
        },
    )
