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
    FulfilmentStep,
    SentNotice,
    TaskHeartbeat,
    Ticket,
    TicketStatus,
    TicketType,
)
from rightsdesk.supervision import stale_after

if TYPE_CHECKING:
    from rightsdesk.service import Desk

DUE_SOON_WORKING_DAYS = 5


@dataclass(frozen=True)
class Line:
    ticket_id: str
    types: str
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
    calendar_warning: str | None = None
    # Tasks of the service that keep failing, or replicas gone silent: someone must look.
    health: list[str] = field(default_factory=list)


SECTION_TITLES = {
    "new": ("新请求（自上次摘要）", "New since the last digest"),
    "triage": ("待分类", "Waiting for triage"),
    "verification": ("等待身份确认", "Waiting for verification"),
    "unassigned": ("未分配", "Unassigned"),
    "due_soon": ("5 个工作日内到期", "Due within 5 working days"),
    "overdue": ("已逾期", "Overdue"),
    "closed": ("最近完成", "Recently finished"),
    "fulfilment": ("系统任务未完成或失败", "Fulfilment: tasks open or systems failed"),
}
LINES_PER_SECTION = 50


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
            named = ", ".join(provisional)
        if today.month == 12 and not calendar.knows_year(next_year) and provisional:
            # Only when a deadline is provisional: a list of none ("：-。") alarms for nothing.
            digest.calendar_warning = (
                f"{next_year} 年的法定节假日尚未收录，以下期限为临时计算（按周一至周五）："
                f"{named}。请在 [deadlines] 中补充或升级 chinese-calendar。\n"
                f"The official holidays of {next_year} are not known yet: these deadlines are "
                f"provisional (counted Monday-Friday): {named}. Add them under [deadlines] "
                "or upgrade chinese-calendar."
            )
    return digest


async def _health(session: Any, desk: Desk) -> list[str]:
    rows = (await session.exec(select(TaskHeartbeat))).all()
    stale_before = desk.clock.now() - stale_after(desk.settings.service)
    tz = desk.policy.tz
    lines = []
    for row in sorted(rows, key=lambda r: (r.replica, r.task)):
        since = (row.failing_since or row.since).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        if row.state in ("failing", "backing_off"):
            lines.append(
                f"  {row.replica} {row.task}: {row.state} since {since}, "
                f"{row.failures} failure(s), last: {row.last_error or '-'}"
            )
        elif row.state != "stopped" and row.beat_at < stale_before:
            seen = row.beat_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            lines.append(f"  {row.replica} {row.task}: no heartbeat since {seen}")
    return lines


def _line(ticket: Ticket, today: dt.date, calendar: WorkingCalendar) -> Line:
    due = ticket.response_due
    left = calendar.working_days_left(today, due) if due is not None else None
    return Line(
        ticket.public_id,
        ",".join(ticket.types),
        ticket.status,
        due.isoformat() if due else "-",
        left,
    )


def _left(line: Line) -> str:
    if line.days_left is None:
        return ""
    if line.days_left < 0:
        return f"逾期 {-line.days_left} 个工作日 / {-line.days_left} working days late"
    return f"剩 {line.days_left} 个工作日 / {line.days_left} working days left"


def render_digest(digest: Digest) -> tuple[str, str, str]:
    """(subject, text, html), in Chinese and English together."""
    overdue = digest.counts.get("overdue", 0)
    subject = (
        f"个人信息请求日报 / Privacy requests digest {digest.day}: "
        f"{sum(digest.by_channel.values())} open, {overdue} overdue"
    )
    text_parts = [subject, ""]
    html_parts = [f"<h2>{html.escape(subject)}</h2>"]
    if digest.calendar_warning:
        text_parts += [digest.calendar_warning, ""]
        html_parts.append(f"<p><b>{html.escape(digest.calendar_warning)}</b></p>")
    if digest.health:
        title = "服务故障 / Service problems (rightsdesk status)"
        text_parts += [title, *digest.health, ""]
        html_parts.append(f"<h3>{html.escape(title)}</h3>")
        html_parts.append(
            "<ul>" + "".join(f"<li>{html.escape(h.strip())}</li>" for h in digest.health) + "</ul>"
        )
    for key, (zh, en) in SECTION_TITLES.items():
        lines = digest.sections.get(key, [])
        total = digest.counts.get(key, len(lines))
        title = f"{zh} / {en} ({total})"
        text_parts.append(title)
        html_parts.append(f"<h3>{html.escape(title)}</h3>")
        if lines:
            html_parts.append(
                "<table><tr><th>id</th><th>type</th><th>status</th><th>due</th><th></th></tr>"
            )
        for line in lines:
            text_parts.append(
                f"  {line.ticket_id}  {line.types}  {line.status}  {line.due}  {_left(line)}"
            )
            cells = (line.ticket_id, line.types, line.status, line.due, _left(line))
            html_parts.append(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        if lines:
            html_parts.append("</table>")
        if total > len(lines):
            more = f"  … 另有 {total - len(lines)} 条 / and {total - len(lines)} more"
            text_parts.append(more)
            html_parts.append(f"<p>{html.escape(more)}</p>")
        text_parts.append("")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(digest.by_type.items())) or "-"
    channels = ", ".join(f"{k} {v}" for k, v in sorted(digest.by_channel.items())) or "-"
    text_parts += [f"按类型 / by type: {counts}", f"按渠道 / by channel: {channels}"]
    html_parts += [f"<p>{html.escape(text_parts[-2])}<br>{html.escape(text_parts[-1])}</p>"]
    return subject, "\n".join(text_parts) + "\n", "\n".join(html_parts)
