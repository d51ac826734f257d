"""The policy's promises as dates: an answer within N working days, deletion within M days."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from rightsdesk.calendar import WorkingCalendar
from rightsdesk.config_sections import DeadlineSettings
from rightsdesk.models import COMPLETION_TYPES, RequestType


@dataclass(frozen=True)
class Deadlines:
    started_on: dt.date  # the local day the clock started (receipt or verification)
    response_due: dt.date
    completion_due: dt.date | None  # only for erasure / account deletion
    provisional: bool  # some day on the way was not in the official calendar

    def as_dict(self) -> dict[str, object]:
        return {
            "started_on": self.started_on.isoformat(),
            "response_due": self.response_due.isoformat(),
            "completion_due": self.completion_due.isoformat() if self.completion_due else None,
            "provisional": self.provisional,
        }


class DeadlinePolicy:
    def __init__(self, settings: DeadlineSettings, tz: ZoneInfo) -> None:
        self.settings = settings
        self.tz = tz
        self.calendar = WorkingCalendar(
            settings.extra_holidays, settings.extra_workdays, settings.complete_years
        )

    def local_day(self, at: dt.datetime) -> dt.date:
        return at.astimezone(self.tz).date()

    def compute(self, started_at: dt.datetime, types: Iterable[RequestType]) -> Deadlines:
        start = self.local_day(started_at)
        response_due, provisional = self.calendar.add_working_days(
            start, self.settings.response_working_days
        )
        completion_due = None
        if COMPLETION_TYPES.intersection(types):
            completion_due = start + dt.timedelta(days=self.settings.completion_calendar_days)
        return Deadlines(start, response_due, completion_due, provisional)

    def latest_extension(self, first_due: dt.date) -> dt.date:
        """The latest answer date an extension may set, from the first one promised."""
        latest, _ = self.calendar.add_working_days(
            first_due, self.settings.max_extension_working_days
        )
        return latest

    def latest_completion(self, first_due: dt.date) -> dt.date:
        """The latest completion date an extension may set, from the first one promised."""
        return first_due + dt.timedelta(days=self.settings.max_completion_extension_days)

    def shift_for_pause(
        self, deadlines: Deadlines, paused_at: dt.datetime, resumed_at: dt.datetime
    ) -> Deadlines:
        """Push the due dates back by the time spent waiting for the requester."""
        paused_on, resumed_on = self.local_day(paused_at), self.local_day(resumed_at)
        working = self.calendar.working_days_between(paused_on, resumed_on)
        response_due, provisional = deadlines.response_due, deadlines.provisional
        if working:
            response_due, shifted_provisional = self.calendar.add_working_days(
                response_due, working
            )
            provisional = provisional or shifted_provisional
        completion_due = deadlines.completion_due
        if completion_due is not None:
            completion_due += resumed_on - paused_on
        return Deadlines(deadlines.started_on, response_due, completion_due, provisional)
