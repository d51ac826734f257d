"""Waiting that a shutdown cuts short: every loop of the service pauses through these, so
SIGTERM never waits out a back-off or a poll interval."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or until `stop` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def wait_or_stop(event: asyncio.Event, stop: asyncio.Event, at_most: float | None) -> None:
    """Until `event` or `stop` is set, or `at_most` seconds have passed (None: no limit)."""
    waits = [asyncio.create_task(event.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
