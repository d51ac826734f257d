"""Figures for the dashboard and reports: open work, intake per week, timeliness per month."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from dataclasses import dataclass, field

from sqlmodel import col, func, select

from rightsdesk.db import Database
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.models import ACTIVE_STATUSES, Ticket, TicketStatus, TicketType

ANSWERED = (TicketStatus.RESOLVED, TicketStatus.DENIED)


@dataclass
class MonthFigures:
    month: str  # YYYY-MM, desk-local
    answered: int = 0
    on_time: int = 0
    extended: int = 0
    denied: int = 0
    working_days: list[int] = field(default_factory=list)

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.answered if self.answered else None

    @property
    def median_working_days(self) -> float | None:
        return statistics.median(self.working_days) if self.working_days else None


@dataclass
class Figures:
    open_by_status: dict[str, int]
    open_by_type: dict[str, int]
    by_channel: dict[str, int]
    received_per_week: list[tuple[dt.date, int]]  # week starting Monday
    months: list[MonthFigures]


class DeskStats:
    def __init__(self, db: Database, policy: DeadlinePolicy) -> None:
        self.db = db
        self.policy = policy

    async def figures(self, today: dt.date, weeks: int = 12, months: int = 6) -> Figures:
        active = [str(s) for s in ACTIVE_STATUSES]
        week0 = today - dt.timedelta(days=today.weekday() + 7 * (weeks - 1))
        month0 = _month_start(today, months - 1)
        async with self.db.reading() as session:
            by_status = (
                await session.exec(
                    select(Ticket.status, func.count())
                    .where(col(Ticket.status).in_(active))
                    .group_by(col(Ticket.status))
                )
            ).all()
            by_type = (
                await session.exec(
                    select(TicketType.type, func.count())
                    .join(Ticket, col(Ticket.id) == col(TicketType.ticket_id))
                    .where(col(Ticket.status).in_(active))
                    .group_by(col(TicketType.type))
                )
            ).all()
            by_channel = (
                await session.exec(
                    select(Ticket.channel, func.count()).group_by(col(Ticket.channel))
                )
            ).all()
            received = (
                await session.exec(
                    select(Ticket.received_at).where(
                        col(Ticket.received_at) >= self._start_of(week0)
                    )
                )
            ).all()
            finished = (
                await session.exec(
                    select(  # type: ignore[call-overload]  # sqlmodel types up to 4 columns
                        Ticket.status,
                        Ticket.finished_at,
                        Ticket.clock_started_at,
                        Ticket.received_at,
                        Ticket.response_due,
                        Ticket.original_response_due,
                    )
                    .where(col(Ticket.status).in_([str(s) for s in ANSWERED]))
                    .where(col(Ticket.finished_at) >= self._start_of(month0))
                )
            ).all()
        weekly: Counter[dt.date] = Counter()
        for at in received:
            day = self.policy.local_day(at)
            weekly[day - dt.timedelta(days=day.weekday())] += 1
        per_month = {
            m: MonthFigures(m)
            for m in (_month_start(today, k).strftime("%Y-%m") for k in range(months - 1, -1, -1))
        }
        calendar = self.policy.calendar
        for status, finished_at, started_at, received_at, due, original_due in finished:
            if finished_at is None:
                continue
            done_on = self.policy.local_day(finished_at)
            figures = per_month.get(done_on.strftime("%Y-%m"))
            if figures is None:
                continue
            figures.answered += 1
            figures.on_time += bool(due is None or done_on <= due)
            figures.extended += original_due is not None
            figures.denied += status == TicketStatus.DENIED
            start = self.policy.local_day(started_at or received_at)
            figures.working_days.append(calendar.working_days_between(start, done_on))
        return Figures(
            open_by_status={str(s): int(n) for s, n in by_status},
            open_by_type={str(t): int(n) for t, n in by_type},
            by_channel={str(c): int(n) for c, n in by_channel},
            received_per_week=[
                (week0 + dt.timedelta(days=7 * k), weekly[week0 + dt.timedelta(days=7 * k)])
                for k in range(weeks)
            ],
            months=list(per_month.values()),
        )

    def _start_of(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), self.policy.tz)


def _month_start(today: dt.date, back: int) -> dt.date:
    index = today.year * 12 + today.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)
