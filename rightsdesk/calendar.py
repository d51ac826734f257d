"""Mainland-China working days, as published by the State Council.

`chinese-calendar` carries the official schedule (public holidays and the weekend make-up
working days, 调休) for the years it knows. For a year it does not know yet we fall back to
Monday-Friday and say so: every answer carries whether it is provisional.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

import chinese_calendar


class WorkingCalendar:
    def __init__(
        self,
        extra_holidays: Iterable[dt.date] = (),
        extra_workdays: Iterable[dt.date] = (),
        complete_years: Iterable[int] = (),
    ) -> None:
        self._holidays = frozenset(extra_holidays)
        self._workdays = frozenset(extra_workdays)
        self._complete_years = frozenset(complete_years)
        clash = self._holidays & self._workdays
        if clash:
            raise ValueError(f"dates listed as both holiday and workday: {sorted(clash)}")

    def knows_year(self, year: int) -> bool:
        """True if the official schedule of `year` is known (library or DPO overrides)."""
        if year in self._complete_years:
            return True
        try:
            chinese_calendar.is_workday(dt.date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_working_day(self, day: dt.date) -> tuple[bool, bool]:
        """(is it a working day, is that answer official rather than a Mon-Fri guess)."""
        if day in self._holidays:
            return False, True
        if day in self._workdays:
            return True, True
        if day.year in self._complete_years:
            return day.weekday() < 5, True
        try:
            return bool(chinese_calendar.is_workday(day)), True
        except NotImplementedError:
            return day.weekday() < 5, False

    @functools.lru_cache(maxsize=8192)  # noqa: B019
    def add_working_days(self, start: dt.date, count: int) -> tuple[dt.date, bool]:
        """The `count`-th working day after `start` (start itself not counted).

        Returns the date and whether any day on the way was a guess (provisional).
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        day = start
        provisional = False
        remaining = count
        while remaining:
            day += dt.timedelta(days=1)
            working, official = self.is_working_day(day)
            provisional = provisional or not official
            if working:
                remaining -= 1
        return day, provisional

    def working_days_left(self, today: dt.date, due: dt.date) -> int:
        """Working days from today to a due date; negative, the working days late."""
        if due >= today:
            return self.working_days_between(today, due)
        return -self.working_days_between(due, today)

    @functools.lru_cache(maxsize=8192)  # noqa: B019  (calendars live as long as the process)
    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days in (start, end]: how many the clock would have counted."""
        count = 0
        day = start
        while day < end:
            day += dt.timedelta(days=1)
            if self.is_working_day(day)[0]:
                count += 1
        return count
