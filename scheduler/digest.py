"""The DPO's daily digest: what is new, waiting, unowned, due soon, overdue, recently closed."""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlmodel import col, select

from rightsdesk.models import ACTIVE_STATUSES, SentNotice, Ticket, TicketStatus

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
    sections: dict[str, list[Line]] = field(default_factory=dict)
    by_type: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    calendar_warning: str | None = None


SECTION_TITLES = {
    "new": ("新请求（自上次摘要）", "New since the last digest"),
    "triage": ("待分类", "Waiting for triage"),
    "verification": ("等待身份确认", "Waiting for verification"),
    "unassigned": ("未分配", "Unassigned"),
    "due_soon": ("5 个工作日内到期", "Due within 5 working days"),
    "overdue": ("已逾期", "Overdue"),
    "closed": ("最近完成", "Recently finished"),
}


async def build_digest(desk: Desk, today: dt.date) -> Digest:
    calendar = desk.policy.calendar
    digest = Digest(day=today)
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
        active = [str(s) for s in ACTIVE_STATUSES]
        tickets = (
            await session.exec(
                select(Ticket).where(
                    col(Ticket.status).in_(active)
                    | (col(Ticket.finished_at) >= since)
                    | (col(Ticket.created_at) >= since)
                )
            )
        ).all()
    for ticket in sorted(tickets, key=lambda t: (t.response_due or dt.date.max, t.public_id)):
        due = ticket.response_due
        left = None
        if due is not None:
            left = (
                calendar.working_days_between(today, due)
                if due >= today
                else -calendar.working_days_between(due, today)
            )
        line = Line(
            ticket.public_id,
            ",".join(ticket.types),
            ticket.status,
            due.isoformat() if due else "-",
            left,
        )
        is_active = TicketStatus(ticket.status) in ACTIVE_STATUSES
        if ticket.created_at >= since:
            digest.sections.setdefault("new", []).append(line)
        if is_active:
            digest.by_type.update(str(t) for t in ticket.types)
            digest.by_channel[ticket.channel] += 1
            if ticket.needs_review:
                digest.sections.setdefault("triage", []).append(line)
            if ticket.status == TicketStatus.AWAITING_VERIFICATION:
                digest.sections.setdefault("verification", []).append(line)
            if not ticket.assignee:
                digest.sections.setdefault("unassigned", []).append(line)
            if left is not None and left < 0:
                digest.sections.setdefault("overdue", []).append(line)
            elif left is not None and left <= DUE_SOON_WORKING_DAYS:
                digest.sections.setdefault("due_soon", []).append(line)
        elif ticket.finished_at and ticket.finished_at >= since:
            digest.sections.setdefault("closed", []).append(line)
    next_year = today.year + 1
    if today.month == 12 and not calendar.knows_year(next_year):
        provisional = [t.public_id for t in tickets if t.deadlines_provisional]
        digest.calendar_warning = (
            f"{next_year} 年的法定节假日尚未收录，以下期限为临时计算（按周一至周五）："
            f"{', '.join(provisional) or '无'}。请在 [deadlines] 中补充或升级 chinese-calendar。\n"
            f"The official holidays of {next_year} are not known yet: these deadlines are "
            f"provisional (counted Monday-Friday): {', '.join(provisional) or 'none'}. Add them "
            "under [deadlines] or upgrade chinese-calendar."
        )
    return digest


def _left(line: Line) -> str:
    if line.days_left is None:
        return ""
    if line.days_left < 0:
        return f"逾期 {-line.days_left} 个工作日 / {-line.days_left} working days late"
    return f"剩 {line.days_left} 个工作日 / {line.days_left} working days left"


def render_digest(digest: Digest) -> tuple[str, str, str]:
    """(subject, text, html), in Chinese and English together."""
    overdue = len(digest.sections.get("overdue", []))
    subject = (
        f"个人信息请求日报 / Privacy requests digest {digest.day}: "
        f"{sum(digest.by_channel.values())} open, {overdue} overdue"
    )
    text_parts = [subject, ""]
    html_parts = [f"<h2>{html.escape(subject)}</h2>"]
    if digest.calendar_warning:
        text_parts += [digest.calendar_warning, ""]
        html_parts.append(f"<p><b>{html.escape(digest.calendar_warning)}</b></p>")
    for key, (zh, en) in SECTION_TITLES.items():
        lines = digest.sections.get(key, [])
        title = f"{zh} / {en} ({len(lines)})"
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
        text_parts.append("")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(digest.by_type.items())) or "-"
    channels = ", ".join(f"{k} {v}" for k, v in sorted(digest.by_channel.items())) or "-"
    text_parts += [f"按类型 / by type: {counts}", f"按渠道 / by channel: {channels}"]
    html_parts += [f"<p>{html.escape(text_parts[-2])}<br>{html.escape(text_parts[-1])}</p>"]
    return subject, "\n".join(text_parts) + "\n", "\n".join(html_parts)
