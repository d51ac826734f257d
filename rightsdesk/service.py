"""The composition root: builds the desk from settings, wires the channels, runs until told to stop.

This is the one module of the core that may import the adapters (intake/, bot/, scheduler/).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from rightsdesk.accounts import AccountDirectory
from rightsdesk.clock import Clock, SystemClock
from rightsdesk.config import Settings
from rightsdesk.db import Database
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.tickets import TicketService

log = logging.getLogger("rightsdesk.service")

SHUTDOWN_GRACE_SECONDS = 4.0


@dataclass
class Desk:
    """The core objects, built once from settings and shared by every channel and command."""

    settings: Settings
    clock: Clock
    db: Database
    policy: DeadlinePolicy
    tickets: TicketService
    accounts: AccountDirectory

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Desk:
        clock = clock or SystemClock()
        db = Database(settings.database)
        policy = DeadlinePolicy(settings.deadlines, settings.desk.tz)
        return cls(
            settings=settings,
            clock=clock,
            db=db,
            policy=policy,
            tickets=TicketService(db, clock, policy),
            accounts=AccountDirectory(db, clock),
        )

    async def close(self) -> None:
        await self.db.dispose()


def configure_logging(settings: Settings) -> None:
    # Log lines carry ticket ids and counts, never addresses or message text (personal data).
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Migrate, start every configured channel, and run until SIGTERM/SIGINT (or `stop`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    desk = Desk.build(settings)
    tasks: list[asyncio.Task[None]] = []
    try:
        await desk.db.migrate()
        changed = await desk.tickets.recompute_provisional_deadlines()
        if changed:
            log.info("recomputed provisional deadlines of %d ticket(s)", len(changed))
        # Channel adapters (SMTP receiver, IMAP watcher, bot, scheduler) are started here and
        # appended to `tasks` as they are built.
        log.info("rightsdesk ready: database=%s", desk.db.url.get_backend_name())
        await stop.wait()
        log.info("stopping")
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        await desk.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        log.info("stopped")
