"""The dashboard: open work, intake, timeliness, as SVG charts drawn on the server by pygal.

Each chart is its own SVG document (an <img> on the page), so the page keeps a CSP without
inline styles and no chart can run script; pygal's tooltip JavaScript (fetched from a CDN by
default) is switched off.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

import pygal
from pygal.style import Style
from starlette.requests import Request
from starlette.responses import Response

from console.pages import nav_context
from console.web import error_page, guard, render, session_of, strings
from rightsdesk.stats import DeskStats, Figures
from rightsdesk.tickets import TicketFilter, TicketService
from rightsdesk.views import ticket_summary

CHARTS = ("status", "type", "weekly", "on_time", "median_days", "channel")
_FIGURES_TTL = 30.0  # seconds: six charts and the page share one computation

STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#333",
    foreground_strong="#111",
    foreground_subtle="#999",
    colors=("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#4a5568"),
    font_family="'WenQuanYi Micro Hei', 'Noto Sans CJK SC', 'PingFang SC', sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=12,
    title_font_size=15,
    value_font_size=11,
)


async def figures(request: Request) -> Figures:
    state = request.app.state
    cached: tuple[float, Figures] | None = getattr(state, "figures", None)
    if cached is not None and time.monotonic() - cached[0] < _FIGURES_TTL:
        return cached[1]
    tickets: TicketService = state.tickets
    fresh = await DeskStats(tickets.db, tickets.policy).figures(tickets.today())
    state.figures = (time.monotonic(), fresh)
    return fresh


@guard("read")
async def dashboard_page(request: Request) -> Response:
    tickets: TicketService = request.app.state.tickets
    found = await figures(request)
    overdue = await tickets.find(TicketFilter(overdue=True, limit=20))
    today, tz = tickets.today(), tickets.policy.tz
    return render(
        request,
        "dashboard.html.j2",
        {
            **(await nav_context(request)),
            "charts": CHARTS,
            "figures": found,
            "overdue": [ticket_summary(t, today, tz) for t in overdue],
            "open_total": sum(found.open_by_status.values()),
        },
    )


@guard("read")
async def chart(request: Request) -> Response:
    name = request.path_params["chart"]
    if name not in CHARTS:
        return error_page(request, 404, f"no chart {name!r}")
    t = strings(session_of(request).staff.language)
    found = await figures(request)
    svg = await asyncio.to_thread(draw, name, found, t)  # pygal is CPU work: off the loop
    return Response(svg, media_type="image/svg+xml")


def _options(t: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "style": STYLE,
        "title": t["chart_" + name],
        "js": [],  # no tooltip script, no CDN
        "width": 560,
        "height": 320,
        "show_legend": False,
        "print_values": True,
        "no_data_text": t["chart_no_data"],
        "disable_xml_declaration": False,
    }


def _label(t: dict[str, str], prefix: str, key: str) -> str:
    return t.get(prefix + key, key)


def _counts(values: list[int]) -> dict[str, Any]:
    """Whole-number axis labels for counts (pygal would draw 0.2, 0.4, ...)."""
    top = max(values, default=0)
    step = max(1, math.ceil(top / 6))
    return {"y_labels": list(range(0, top + step, step))}


def draw(name: str, found: Figures, t: dict[str, str]) -> bytes:
    chart: Any
    if name == "status":
        chart = pygal.Bar(**_options(t, name), **_counts(list(found.open_by_status.values())))
        chart.x_labels = [_label(t, "status_", s) for s in found.open_by_status]
        chart.add(t["chart_tickets"], list(found.open_by_status.values()))
    elif name == "type":
        chart = pygal.HorizontalBar(
            **_options(t, name), **_counts(list(found.open_by_type.values()))
        )
        chart.x_labels = [_label(t, "type_", k) for k in found.open_by_type]
        chart.add(t["chart_tickets"], list(found.open_by_type.values()))
    elif name == "weekly":
        weekly = [n for _, n in found.received_per_week]
        chart = pygal.Bar(**_options(t, name), x_label_rotation=30, **_counts(weekly))
        chart.x_labels = [week.strftime("%m-%d") for week, _ in found.received_per_week]
        chart.add(t["chart_tickets"], [n for _, n in found.received_per_week])
    elif name == "on_time":
        chart = pygal.Line(**_options(t, name), range=(0, 100))
        chart.x_labels = [m.month for m in found.months]
        chart.add(
            "%",
            [None if m.on_time_rate is None else round(100 * m.on_time_rate) for m in found.months],
        )
    elif name == "median_days":
        chart = pygal.Bar(**_options(t, name))
        chart.x_labels = [m.month for m in found.months]
        chart.add(t["chart_working_days"], [m.median_working_days for m in found.months])
    else:
        chart = pygal.Pie(**{**_options(t, name), "show_legend": True})
        for channel, count in found.by_channel.items():
            chart.add(_label(t, "channel_", channel), count)
    rendered: bytes = chart.render()
    # pygal always embeds its config as a <script>; the chart needs none (and the CSP forbids
    # it). Labels are XML-escaped by pygal, so "<script" can only be that element.
    return _SCRIPT.sub(b"", rendered)


_SCRIPT = re.compile(rb"<script\b.*?</script>", re.DOTALL)
