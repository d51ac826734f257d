"""APScheduler 3.11 as a plain in-memory timer: every `tick_seconds`, run whatever is due.

The durable state (what was sent, what is due) lives in our tables, not in a job store: a
restart, or a second replica ticking at the same moment, cannot send anything twice (the
`sentnotice` unique key), and a tick missed while the service was down is made up by the
next one (jobs ask "what is due now", not "what was due at 09:00").
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from scheduler.jobs import run_due_jobs

if TYPE_CHECKING:
    from rightsdesk.service import Desk

log = logging.getLogger("rightsdesk.scheduler")


class Scheduler:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self._timer = AsyncIOScheduler(timezone=desk.policy.tz)

    async def tick(self) -> None:
        await run_due_jobs(self.desk)

    def start(self) -> None:
        self._timer.add_job(
            self.tick,
            IntervalTrigger(seconds=self.desk.settings.scheduler.tick_seconds),
            id="tick",
            max_instances=1,  # a slow tick is not overlapped by the next
            coalesce=True,  # ticks missed while busy collapse into one
            # First tick right away: a digest missed while the service was down goes out now.
            next_run_time=dt.datetime.now(self.desk.policy.tz),
        )
        self._timer.start()
        log.info("scheduler ticking every %.0fs", self.desk.settings.scheduler.tick_seconds)

    def stop(self) -> None:
        if self._timer.running:
            self._timer.shutdown(wait=False)
