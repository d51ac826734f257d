"""IntakeWorker: routes stored messages as they arrive, a batch at a time."""

from __future__ import annotations

import asyncio
import logging

from rightsdesk.pipeline.batches import IntakePipeline
from rightsdesk.pipeline.inbox import Inbox
from rightsdesk.pipeline.routing import DEFERRED
from rightsdesk.waiting import wait_or_stop

log = logging.getLogger("rightsdesk.intake")


class IntakeWorker:
    """Routes stored messages as they arrive, and whatever a crash left behind at start-up.

    Acknowledging comes first: while deliveries are arriving, routing waits (up to
    `max_deferral` seconds) so the doors keep the event loop. Every waiting message is
    already durable, so a burst only delays routing; it never risks a message. After a full
    batch more is waiting: the next batch goes at once, until one comes back short. (Waiting
    before every batch capped routing at a batch per `max_deferral`, 32 messages a second,
    under any steady stream busier than one delivery per `quiet_seconds`: the backlog grew
    without bound at the 33 a second of #15's sustained test.)
    """

    def __init__(
        self,
        pipeline: IntakePipeline,
        inbox: Inbox,
        poll_seconds: float = 5.0,
        quiet_seconds: float = 0.05,
        max_deferral: float = 2.0,
        retry_max_seconds: float = 300.0,
    ) -> None:
        self.pipeline = pipeline
        self.inbox = inbox
        self.poll_seconds = poll_seconds
        self.quiet_seconds = quiet_seconds
        self.max_deferral = max_deferral
        self.retry_max_seconds = retry_max_seconds
        # Messages deferred by a transient failure: row id -> (failures, loop time of the next
        # try). In memory on purpose: a restart is a fresh chance for each of them.
        self._deferred: dict[int, tuple[int, float]] = {}

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Route everything stored that is not backing off, a batch at a time (or until
        `stop`, between two batches: each is whole or not at all); returns how many messages
        were done."""
        loop = asyncio.get_running_loop()
        done = 0
        behind = False  # the last batch was full: more is waiting, route on
        while stop is None or not stop.is_set():
            now = loop.time()
            backing_off = [i for i, (_, at) in self._deferred.items() if at > now]
            if not behind:
                await self.inbox.wait_for_quiet(self.quiet_seconds, self.max_deferral)
            batch = await self.pipeline.route_next(skip=backing_off)
            if not batch.claimed:
                return done
            behind = batch.claimed >= self.pipeline.batch_size
            for row_id, outcome in batch.outcomes.items():
                if outcome == DEFERRED:
                    failures = self._deferred.get(row_id, (0, 0.0))[0] + 1
                    delay = min(self.retry_max_seconds, 2.0 ** (failures - 1))
                    self._deferred[row_id] = (failures, loop.time() + delay)
                else:
                    self._deferred.pop(row_id, None)
                    done += 1
        return done

    @property
    def deferred(self) -> int:
        """How many messages are backing off after a transient failure."""
        return len(self._deferred)

    def _next_wait(self) -> float:
        if not self._deferred:
            return self.poll_seconds
        soonest = min(at for _, at in self._deferred.values())
        left = soonest - asyncio.get_running_loop().time()
        return max(0.05, min(self.poll_seconds, left))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.inbox.stored.clear()
            await self.drain(stop)
            await wait_or_stop(self.inbox.stored, stop, self._next_wait())
