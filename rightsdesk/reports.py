"""The monthly report: what the desk received and answered in one month, for the DPO and the
regulator, as figures (`monthly_report`), as text (a template) and as PDF (`report_pdf`)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import col, func, select

from rightsdesk.db import Database
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import Ticket, TicketStatus, TicketType
from rightsdesk.refusals import Refusal
from rightsdesk.templating import Templates
from rightsdesk.views import local_time

TEMPLATES = Path(__file__).parent / "templates" / "reports"
# Debian's fonts-wqy-microhei: a font that has the Chinese characters.
DEFAULT_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


class ReportError(Refusal):
    pass


# The months a report can cover: a desk's years, with room on both sides. Past them the
# month's bounds in the desk's time zone overflow Python's dates (0001-01, 9999-12).
FIRST_MONTH = "1970-01"
LAST_MONTH = "2999-12"


@dataclass
class MonthReport:
    month: str  # YYYY-MM
    received_by_type: dict[str, int] = field(default_factory=dict)
    received: int = 0
    answered: int = 0
    on_time: int = 0
    late: int = 0
    extended: int = 0
    denied: int = 0
    denial_reasons: list[tuple[str, str]] = field(default_factory=list)
    working_days: list[int] = field(default_factory=list)

    @property
    def median_working_days(self) -> float | None:
        return statistics.median(self.working_days) if self.working_days else None


def parse_month(value: str) -> tuple[dt.date, dt.date]:
    """The first day of the month and of the next one."""
    try:
        first = dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise ReportError(
            f"month: expected YYYY-MM, e.g. 2026-11, got {value[:20]!r}",
            "month_format",
            month=value[:20],
        ) from None
    if not FIRST_MONTH <= first.strftime("%Y-%m") <= LAST_MONTH:
        raise ReportError(
            f"month: a report covers {FIRST_MONTH} to {LAST_MONTH}, got {value[:20]!r}",
            "month_range",
            month=value[:20],
            first=FIRST_MONTH,
            last=LAST_MONTH,
        )
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, following


async def monthly_report(db: Database, policy: DeadlinePolicy, month: str) -> MonthReport:
    first, following = parse_month(month)
    start = dt.datetime.combine(first, dt.time(), policy.tz)
    end = dt.datetime.combine(following, dt.time(), policy.tz)
    report = MonthReport(first.strftime("%Y-%m"))
    async with db.reading() as session:
        received = (
            await session.exec(
                select(TicketType.type)
                .join(Ticket, col(Ticket.id) == col(TicketType.ticket_id))
                .where(col(Ticket.received_at) >= start)
                .where(col(Ticket.received_at) < end)
            )
        ).all()
        report.received = (
            await session.exec(
                select(func.count())
                .select_from(Ticket)
                .where(col(Ticket.received_at) >= start)
                .where(col(Ticket.received_at) < end)
            )
        ).one()
        answered = (
            await session.exec(
                select(Ticket)
                .where(col(Ticket.status).in_([TicketStatus.RESOLVED, TicketStatus.DENIED]))
                .where(col(Ticket.finished_at) >= start)
                .where(col(Ticket.finished_at) < end)
                .order_by(col(Ticket.id))
            )
        ).all()
    report.received_by_type = dict(sorted(Counter(str(t) for t in received).items()))
    for ticket in answered:
        assert ticket.finished_at is not None
        done_on = policy.local_day(ticket.finished_at)
        report.answered += 1
        if ticket.response_due is None or done_on <= ticket.response_due:
            report.on_time += 1
        else:
            report.late += 1
        report.extended += ticket.original_response_due is not None
        if ticket.status == TicketStatus.DENIED:
            report.denied += 1
            report.denial_reasons.append((ticket.public_id, ticket.denial_reason or ""))
        begun = policy.local_day(ticket.clock_started_at or ticket.received_at)
        report.working_days.append(policy.calendar.working_days_between(begun, done_on))
    return report


def report_text(
    report: MonthReport,
    company: str,
    made: dt.datetime,
    tz: dt.tzinfo,
    langs: tuple[str, ...] = ("zh", "en"),
    templates: Templates | None = None,
) -> str:
    """The report in each language, one after the other (Chinese first). `made` is said in
    the desk's time zone, as every other time is. Request types are named for staff
    (`staff_type_*` of names.<lang>.j2; the built-in names unless `templates` is given)."""
    names = templates or Templates(None, company)
    made_local = dt.datetime.fromisoformat(local_time(made, tz) or "").isoformat("T", "minutes")
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["staff_type"] = lambda kind, lang: names.name("staff_type", kind, lang)
    parts = []
    for lang in langs:
        template = env.get_template(f"monthly.{lang}.j2")
        context = template.new_context({"r": report, "company": company, "made": made_local})
        parts.append("".join(template.blocks["body"](context)).strip())
    return "\n\n".join(parts) + "\n"


def report_pdf(text: str, font_file: Path = DEFAULT_FONT) -> bytes:
    """The report's text as an A4 PDF. CPU work: call it off the event loop."""
    from fpdf import FPDF

    if not font_file.is_file():
        raise ReportError(
            f"no font at {font_file} for the PDF's Chinese "
            "(apt-get install fonts-wqy-microhei, or set console.pdf_font_file)"
        )
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.add_font("desk", fname=str(font_file))
    for line in text.splitlines():
        heading = line.startswith("# ")
        pdf.set_font("desk", size=13 if heading else 10)
        pdf.multi_cell(0, 7 if heading else 5.5, line[2:] if heading else line or " ")
        pdf.set_x(pdf.l_margin)
    return bytes(pdf.output())
