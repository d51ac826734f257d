"""The DPO's daily digest: what is new, waiting, unowned, due soon, overdue, recently closed."""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import col, func, select

from rightsdesk.calendar import WorkingCalendar
from rightsdesk.models import (
    ACTIVE_STATUSES,
    SentNotice,
    TaskHeartbeat,
    Ticket,
    TicketStatus,
    TicketType,
)
from rightsdesk.models_fulfilment import FulfilmentStep
from rightsdesk.supervision import stale_after
from rightsdesk.templating import Templates

if TYPE_CHECKING:
    from rightsdesk.service import Desk

DUE_SOON_WORKING_DAYS = 5


@dataclass(frozen=True)
class Line:
    ticket_id: str
    types: tuple[str, ...]  # RequestType values; named for staff when rendered
    status: str
    due: str
    days_left: int | None  # working days; negative when overdue


@dataclass
class Digest:
    day: dt.date
    sections: dict[str, list[Line]] = field(default_factory=dict)  # the most urgent lines
    counts: dict[str, int] = field(default_factory=dict)  # the whole of each section
    by_type: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    # In December, when next year's holidays are not known: that year, and the tickets whose
    # deadlines are counted Monday-Friday meanwhile (none: no warning).
    provisional_year: int | None = None
    provisional: list[str] = field(default_factory=list)
    # Tasks of the service that keep failing, or replicas gone silent: someone must look.
    health: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """A task of a replica that keeps failing (`state`), or went silent (`state` None)."""

    replica: str
    task: str
    since: str  # Beijing time, to the minute
    state: str | None = None
    failures: int = 0
    error: str = "-"


# The sections, in the digest's order (headings: `section_<key>` of digest.<lang>.j2).
SECTIONS = (
    *("new", "triage", "verification", "unassigned", "due_soon", "overdue", "closed"),
    "fulfilment",
)
LINES_PER_SECTION = 50
# The digest is written in these languages, each heading in all of them (the DPO may read
# either); see rightsdesk/templates/digest.<lang>.j2.
DIGEST_LANGS = ("zh", "en")


async def build_digest(desk: Desk, today: dt.date) -> Digest:
    """Every section is one indexed query: a count, and its most urgent lines."""
    calendar = desk.policy.calendar
    digest = Digest(day=today)
    soon, _ = calendar.add_working_days(today, DUE_SOON_WORKING_DAYS)
    active = col(Ticket.status).in_([str(s) for s in ACTIVE_STATUSES])
    async with desk.db.reading() as session:
        last = (
            await session.exec(
                select(SentNotice.created_at)
                .where(SentNotice.kind == "digest")
                .order_by(col(SentNotice.created_at).desc())
                .limit(1)
            )
        ).first()
        since = last or (desk.clock.now() - dt.timedelta(days=1))
        conditions: dict[str, Any] = {
            "new": col(Ticket.created_at) >= since,
            "triage": active & col(Ticket.needs_review).is_(True),
            "verification": col(Ticket.status) == TicketStatus.AWAITING_VERIFICATION,
            "unassigned": active & col(Ticket.assignee).is_(None),
            "due_soon": active
            & (col(Ticket.response_due) >= today)
            & (col(Ticket.response_due) <= soon),
            "overdue": active & (col(Ticket.response_due) < today),
            "closed": col(Ticket.finished_at) >= since,
            # A manual task its owners have not answered, or a system that keeps failing.
            "fulfilment": select(FulfilmentStep.id)
            .where(FulfilmentStep.ticket_id == Ticket.id)
            .where(col(FulfilmentStep.status).in_(["open", "failed"]))
            .exists(),
        }
        for key, condition in conditions.items():
            digest.counts[key] = (
                await session.exec(select(func.count()).select_from(Ticket).where(condition))
            ).one()
            rows = (
                await session.exec(
                    select(Ticket)
                    .where(condition)
                    .order_by(col(Ticket.response_due).is_(None), col(Ticket.response_due))
                    .limit(LINES_PER_SECTION)
                )
            ).all()
            digest.sections[key] = [_line(t, today, calendar) for t in rows]
        by_type = await session.exec(
            select(TicketType.type, func.count())
            .join(Ticket, col(Ticket.id) == col(TicketType.ticket_id))
            .where(active)
            .group_by(col(TicketType.type))
        )
        digest.by_type = Counter({t: n for t, n in by_type.all()})
        by_channel = await session.exec(
            select(Ticket.channel, func.count()).where(active).group_by(col(Ticket.channel))
        )
        digest.by_channel = Counter({c: n for c, n in by_channel.all()})
        digest.health = await _health(session, desk)
        next_year = today.year + 1
        provisional: Sequence[str] = []
        if today.month == 12 and not calendar.knows_year(next_year):
            provisional = (
                await session.exec(
                    select(Ticket.public_id)
                    .where(active & col(Ticket.deadlines_provisional).is_(True))
                    .order_by(col(Ticket.id))
                    .limit(200)
                )
            ).all()
        if provisional:
            # Only when a deadline is provisional: a list of none ("：-。") alarms for nothing.
            digest.provisional_year, digest.provisional = next_year, list(provisional)
    return digest


async def _health(session: Any, desk: Desk) -> list[Problem]:
    rows = (await session.exec(select(TaskHeartbeat))).all()
    stale_before = desk.clock.now() - stale_after(desk.settings.service)
    tz = desk.policy.tz
    found = []
    for row in sorted(rows, key=lambda r: (r.replica, r.task)):
        since = (row.failing_since or row.since).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        if row.state in ("failing", "backing_off"):
            found.append(
                Problem(
                    row.replica, row.task, since, row.state, row.failures, row.last_error or "-"
                )
            )
        elif row.state != "stopped" and row.beat_at < stale_before:
            seen = row.beat_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            found.append(Problem(row.replica, row.task, seen))
    return found


def _line(ticket: Ticket, today: dt.date, calendar: WorkingCalendar) -> Line:
    due = ticket.response_due
    # A finished ticket (resolved, denied, closed...) has no days left: nothing is due.
    active = TicketStatus(ticket.status) in ACTIVE_STATUSES
    left = calendar.working_days_left(today, due) if due is not None and active else None
    return Line(
        ticket.public_id,
        tuple(str(t) for t in ticket.types),
        ticket.status,
        due.isoformat() if due else "-",
        left,
    )


class _Words:
    """The digest's sentences (digest.<lang>.j2), in each of its languages. Only the layout
    is here: a heading is said in every language, joined by " / "; a line said once (the
    subject's counts, the service's problems, the table's headings) in the last language."""

    def __init__(self, templates: Templates, langs: Sequence[str]) -> None:
        self.templates = templates
        self.langs = tuple(langs)

    def each(self, what: str, **values: Any) -> str:
        return " / ".join(
            self.templates.phrase("digest", what, lang, **values) for lang in self.langs
        )

    def once(self, what: str, **values: Any) -> str:
        return self.templates.phrase("digest", what, self.langs[-1], **values)

    def type_name(self, kind: str) -> str:
        """A request type as staff call it, in every language ("删除/erasure")."""
        return "/".join(self.templates.name("staff_type", kind, lang) for lang in self.langs)


def _left(words: _Words, line: Line) -> str:
    if line.days_left is None:
        return ""
    if line.days_left < 0:
        return words.each("days_late", days=-line.days_left)
    return words.each("days_left", days=line.days_left)


def calendar_warning(
    digest: Digest, templates: Templates, langs: Sequence[str] = DIGEST_LANGS
) -> str | None:
    """December's warning, a line per language; None when no deadline is provisional."""
    if digest.provisional_year is None:
        return None
    named = ", ".join(digest.provisional)
    return "\n".join(
        templates.phrase("digest", "calendar_warning", lang, year=digest.provisional_year,
                         tickets=named)
        for lang in langs
    )  # fmt: skip


def _problem(words: _Words, problem: Problem) -> str:
    if problem.state is None:
        return words.once("health_silent", replica=problem.replica, task=problem.task,
                          seen=problem.since)  # fmt: skip
    return words.once(
        "health_failing", replica=problem.replica, task=problem.task, state=problem.state,
        since=problem.since, failures=problem.failures, error=problem.error,
    )  # fmt: skip


def render_digest(
    digest: Digest, templates: Templates, langs: Sequence[str] = DIGEST_LANGS
) -> tuple[str, str, str]:
    """(subject, text, html), in the digest's languages together (Chinese and English)."""
    words = _Words(templates, langs)
    overdue = digest.counts.get("overdue", 0)
    counts_line = words.once("open_overdue", open=sum(digest.by_channel.values()), overdue=overdue)
    subject = f"{words.each('title')} {digest.day}: {counts_line}"
    text_parts = [subject, ""]
    html_parts = [f"<h2>{html.escape(subject)}</h2>"]
    warning = calendar_warning(digest, templates, langs)
    if warning:
        text_parts += [warning, ""]
        html_parts.append(f"<p><b>{html.escape(warning)}</b></p>")
    if digest.health:
        problems = [_problem(words, p) for p in digest.health]
        title = words.each("health")
        text_parts += [title, *(f"  {p}" for p in problems), ""]
        html_parts.append(f"<h3>{html.escape(title)}</h3>")
        html_parts.append(
            "<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"
        )
    heads = "".join(
        f"<th>{html.escape(words.once(c))}</th>" for c in ("col_id", "col_type", "col_status")
    )
    heads += f"<th>{html.escape(words.once('col_due'))}</th><th></th>"
    for key in SECTIONS:
        lines = digest.sections.get(key, [])
        total = digest.counts.get(key, len(lines))
        title = f"{words.each('section_' + key, days=DUE_SOON_WORKING_DAYS)} ({total})"
        text_parts.append(title)
        html_parts.append(f"<h3>{html.escape(title)}</h3>")
        if lines:
            html_parts.append(f"<table><tr>{heads}</tr>")
        for line in lines:
            left = _left(words, line)
            types = ", ".join(words.type_name(t) for t in line.types)
            text_parts.append(
                f"  {line.ticket_id}  {types}  {line.status}  {line.due}  {left}".rstrip()
            )
            cells = (line.ticket_id, types, line.status, line.due, left)
            html_parts.append(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        if lines:
            html_parts.append("</table>")
        if total > len(lines):
            more = f"  … {words.each('more', more=total - len(lines))}"
            text_parts.append(more)
            html_parts.append(f"<p>{html.escape(more)}</p>")
        text_parts.append("")
    counts = (
        ", ".join(f"{words.type_name(k)} {v}" for k, v in sorted(digest.by_type.items())) or "-"
    )
    channels = ", ".join(f"{k} {v}" for k, v in sorted(digest.by_channel.items())) or "-"
    text_parts += [f"{words.each('by_type')}: {counts}", f"{words.each('by_channel')}: {channels}"]
    html_parts += [f"<p>{html.escape(text_parts[-2])}<br>{html.escape(text_parts[-1])}</p>"]
    return subject, "\n".join(text_parts) + "\n", "\n".join(html_parts)
