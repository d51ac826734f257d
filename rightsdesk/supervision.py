"""Every long-running task of the service runs under supervision, and says how it is doing.

`Supervisor.supervise(name, work, stop)` runs `work(stop)` until `stop`; when it raises, the
failure is logged at once (the kind of error, never its text: messages carry addresses), the
task restarts after a back-off (doubling from `service.restart_min_seconds` to
`restart_max_seconds`), and after `failing_after` failures in a row it shows as failing.

What each task is doing is kept in `taskheartbeat`, one row per (replica, task), refreshed
every `service.heartbeat_seconds`: `rightsdesk status` and the DPO's digest read it, and a
replica whose rows stopped being refreshed is gone (its outbox claims can be released).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, delete, select, update

from rightsdesk.clock import Clock
from rightsdesk.config_sections import ServiceSettings
from rightsdesk.db import Database
from rightsdesk.models import OutboxEntry, TaskHeartbeat
from rightsdesk.waiting import sleep_or_stop

log = logging.getLogger("rightsdesk.supervision")

Work = Callable[[asyncio.Event], Awaitable[None]]


def replica_name(settings: ServiceSettings) -> str:
    return settings.replica_id or socket.gethostname() or f"pid-{os.getpid()}"


def describe(exc: BaseException) -> str:
    """An exception without its message (which may quote an address or a subject)."""
    name = type(exc).__name__
    errno = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and isinstance(errno, int):
        return f"{name} [Errno {errno}] {os.strerror(errno)}"
    return name


def stale_after(settings: ServiceSettings) -> dt.timedelta:
    """A replica that has not refreshed its rows for this long is taken as gone."""
    return dt.timedelta(seconds=max(3 * settings.heartbeat_seconds, 15.0))


@dataclass(frozen=True)
class TaskState:
    state: str  # up | backing_off | failing | stopped
    since: dt.datetime
    failures: int = 0
    failing_since: dt.datetime | None = None
    last_error: str | None = None
    detail: str | None = None


class Supervisor:
    def __init__(self, db: Database, clock: Clock, settings: ServiceSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.replica = replica_name(settings)
        self.states: dict[str, TaskState] = {}

    # ---- what the tasks say ----------------------------------------------------------------

    async def report(self, task: str, state: str, **fields: object) -> None:
        """Record a task's state now (and in the table, if the database answers)."""
        old = self.states.get(task)
        now = self.clock.now()
        since = old.since if old is not None and old.state == state else now
        base = old or TaskState(state, now)
        self.states[task] = replace(base, state=state, since=since, **fields)  # type: ignore[arg-type]
        try:
            await self.publish([task])
        except Exception as exc:  # the database may be what is failing: the beat catches up
            log.debug("could not publish %s's state: %s", task, describe(exc))

    async def publish(self, tasks: list[str] | None = None) -> None:
        now = self.clock.now()
        rows = [
            {
                "replica": self.replica,
                "task": task,
                "state": s.state,
                "since": s.since,
                "failures": s.failures,
                "failing_since": s.failing_since,
                "last_error": s.last_error,
                "detail": s.detail,
                "beat_at": now,
            }
            for task, s in self.states.items()
            if tasks is None or task in tasks
        ]
        if not rows:
            return
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        statement = insert(TaskHeartbeat).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=["replica", "task"],
            set_={
                name: statement.excluded[name]
                for name in (
                    "state",
                    "since",
                    "failures",
                    "failing_since",
                    "last_error",
                    "detail",
                    "beat_at",
                )
            },
        )
        async with self.db.transaction() as session:
            await session.exec(statement)

    async def start(self) -> None:
        """A fresh start: rows this replica left behind (tasks it no longer runs) go."""
        async with self.db.transaction() as session:
            await session.exec(
                delete(TaskHeartbeat).where(col(TaskHeartbeat.replica) == self.replica)
            )

    async def beat(self, stop: asyncio.Event) -> None:
        """Refresh this replica's rows until `stop`; then say every task stopped."""
        while not stop.is_set():
            try:
                await self.publish()
            except Exception as exc:
                log.warning("heartbeat not written: %s", describe(exc))
            await sleep_or_stop(stop, self.settings.heartbeat_seconds)
        for task, s in list(self.states.items()):
            self.states[task] = replace(s, state="stopped", since=self.clock.now())
        try:
            await self.publish()
        except Exception as exc:
            log.warning("heartbeat not written: %s", describe(exc))

    # ---- running a task --------------------------------------------------------------------

    async def supervise(self, name: str, work: Work, stop: asyncio.Event) -> None:
        """Run `work(stop)` until `stop`, restarting it with back-off whenever it fails (or
        returns before `stop`, which a long-running task must not). A restarted task keeps
        its failing state until it has run `restart_max_seconds` without failing: a task in a
        crash loop never looks up between two crashes."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        failures = 0
        failing_since: dt.datetime | None = None
        delay = settings.restart_min_seconds
        while not stop.is_set():
            started = loop.time()
            if failures == 0:
                await self.report(name, "up", failures=0, failing_since=None)
            well = asyncio.create_task(self._well_after(name, settings.restart_max_seconds))
            try:
                await work(stop)
                if stop.is_set():
                    break
                error = "ended before the service stopped"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = describe(exc)
                # The traceback only at DEBUG: chained exceptions may quote personal data.
                log.debug("task %s failed", name, exc_info=True)
            finally:
                well.cancel()
            if loop.time() - started >= settings.restart_max_seconds:
                failures, failing_since, delay = 0, None, settings.restart_min_seconds  # was well
            failures += 1
            failing_since = failing_since or self.clock.now()
            state = "failing" if failures >= settings.failing_after else "backing_off"
            log.error(
                "task %s failed (%d in a row): %s; restarting in %.3gs",
                name,
                failures,
                error,
                delay,
            )
            await self.report(
                name, state, failures=failures, failing_since=failing_since, last_error=error
            )
            await sleep_or_stop(stop, delay)
            delay = min(delay * 2, settings.restart_max_seconds)
        await self.report(name, "stopped")

    async def _well_after(self, name: str, seconds: float) -> None:
        """Say the task is up once it has run this long without failing."""
        await asyncio.sleep(seconds)
        if self.states.get(name, TaskState("up", self.clock.now())).state != "up":
            await self.report(name, "up", failures=0, failing_since=None)

    def task(self, name: str, work: Work, stop: asyncio.Event) -> asyncio.Task[None]:
        return asyncio.create_task(self.supervise(name, work, stop), name=name)

    # ---- what a dead replica left behind ---------------------------------------------------

    async def release_stale_claims(self) -> int:
        """Outbox entries claimed by a sender that is gone go back to the queue now, not when
        their lease runs out: those of this replica (a start means its predecessor is dead:
        kill -9, power loss) and of replicas whose heartbeats stopped. Returns how many."""
        now = self.clock.now()
        alive = (
            select(TaskHeartbeat.replica)
            .where(col(TaskHeartbeat.replica) != self.replica)
            .where(col(TaskHeartbeat.beat_at) >= now - stale_after(self.settings))
            .where(col(TaskHeartbeat.state) != "stopped")
        )
        async with self.db.transaction() as session:
            result = await session.exec(
                update(OutboxEntry)
                .where(col(OutboxEntry.status) == "pending")
                .where(col(OutboxEntry.claimed_by).is_not(None))
                .where(col(OutboxEntry.claimed_by).not_in(alive))
                .values(claimed_by=None, next_attempt_at=now)
            )
        released = int(result.rowcount or 0)
        if released:
            log.info("released %d outbox claim(s) of senders that are gone", released)
        return released


async def read_heartbeats(db: Database) -> list[TaskHeartbeat]:
    async with db.reading() as session:
        found = await session.exec(
            select(TaskHeartbeat).order_by(col(TaskHeartbeat.replica), col(TaskHeartbeat.task))
        )
        return list(found.all())
