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

from rightsdesk.supervision import describe
from scheduler.jobs import run_due_jobs

if TYPE_CHECKING:
    from rightsdesk.service import Desk

log = logging.getLogger("rightsdesk.scheduler")


class Scheduler:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self._timer = AsyncIOScheduler(timezone=desk.policy.tz)
        self.failures = 0  # ticks in a row in which some job failed
        self.failing_since: dt.datetime | None = None

    async def tick(self) -> None:
        """Every due job, then what came of it for `rightsdesk status` and the digest: a job
        that fails tick after tick shows as failing (each failure is logged by run_due_jobs)."""
        try:
            results = await run_due_jobs(self.desk)
            failed = [name for name, result in results.items() if isinstance(result, Exception)]
            error = "job " + ", ".join(failed) if failed else None
        except Exception as exc:  # never let the timer's job die with it
            log.error("scheduler tick failed: %s", describe(exc))
            error = describe(exc)
        supervisor = self.desk.supervisor
        now = self.desk.clock.now()
        detail = f"last tick {now.astimezone(self.desk.policy.tz):%Y-%m-%d %H:%M:%S}"
        if error is None:
            self.failures, self.failing_since = 0, None
            await supervisor.report(
                "scheduler", "up", failures=0, failing_since=None, detail=detail
            )
            return
        self.failures += 1
        self.failing_since = self.failing_since or now
        failing = self.failures >= supervisor.settings.failing_after
        await supervisor.report(
            "scheduler",
            "failing" if failing else "up",
            failures=self.failures,
            failing_since=self.failing_since,
            last_error=error,
            detail=detail,
        )

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
