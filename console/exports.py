"""Downloads: a CSV of any filtered list, and a ticket's evidence pack."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from console.actions import refusal
from console.pages import nav_context
from console.queues import BadFilter, narrowed, parse_query, working_days_left
from console.web import Console, console_of, error_page, guard, render, session_of, strings
from rightsdesk.evidence import build_pack
from rightsdesk.reports import ReportError, monthly_report, report_pdf, report_text
from rightsdesk.tickets import TicketNotFound, TicketService
from rightsdesk.views import ticket_summary

CSV_COLUMNS = (
    "id",
    "status",
    "types",
    "channel",
    "requester_contact",
    "subject",
    "received_at",
    "response_due",
    "completion_due",
    "working_days_left",
    "overdue",
    "needs_review",
    "assignee",
)
_BATCH = 1000


@guard("read")
async def csv_export(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    me = session_of(request).staff
    try:
        query = parse_query(tickets, dict(request.query_params), me, _BATCH)
        listing = await narrowed(request.app.state.search, query)
    except BadFilter as exc:
        return error_page(request, 400, refusal(strings(session_of(request).staff.language), exc))

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # so spreadsheet programs read the Chinese as UTF-8
        writer.writerow(CSV_COLUMNS)
        today, tz = tickets.today(), tickets.policy.tz
        offset = 0
        while True:
            batch = await tickets.rows(dataclasses.replace(listing.filters, offset=offset))
            for ticket in batch:
                row = ticket_summary(ticket, today, tz)
                row["types"] = " ".join(row["types"])
                row["working_days_left"] = working_days_left(tickets, ticket)
                # A cell starting with = + - @ is a formula to a spreadsheet: neutralise it.
                writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < _BATCH:
                return
            offset += _BATCH

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="tickets.csv"'},
    )


def _cell(value: object) -> str:
    if not isinstance(value, str):
        return "" if value is None else str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@guard("read")
async def evidence_pack(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    public_id = request.path_params["public_id"]
    try:
        data = await build_pack(
            tickets.db, public_id, session_of(request).staff.actor, tickets.clock.now()
        )
    except TicketNotFound as exc:
        return error_page(request, 404, str(exc))
    name = f"{public_id.upper()}-evidence.zip"
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def _month(request: Request, tickets: TicketService) -> str:
    value = request.query_params.get("month")
    if value:
        return value
    first = tickets.today().replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")  # last month, by default


@guard("read")
async def monthly_page(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    try:
        report = await monthly_report(tickets.db, tickets.policy, _month(request, tickets))
    except ReportError as exc:
        return error_page(request, 400, refusal(strings(session_of(request).staff.language), exc))
    return render(request, "report.html.j2", {**(await nav_context(request)), "r": report})


@guard("read")
async def monthly_pdf(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    console: Console = console_of(request)
    try:
        report = await monthly_report(tickets.db, tickets.policy, _month(request, tickets))
        text = report_text(
            report, request.app.state.company, tickets.clock.now(), tickets.policy.tz
        )
        data = await asyncio.to_thread(report_pdf, text, console.settings.pdf_font_file)
    except ReportError as exc:
        return error_page(request, 400, refusal(strings(session_of(request).staff.language), exc))
    return Response(
        data,
        media_type="application/pdf",
        headers={"content-disposition": f'attachment; filename="report-{report.month}.pdf"'},
    )
