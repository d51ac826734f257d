"""Time as a dependency: every rule that depends on "now" takes a Clock."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FrozenClock:
    """A clock that only moves when told to; used by tests and by `rightsdesk deadline`."""

    def __init__(self, at: dt.datetime) -> None:
        self._at = _aware(at)

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        self._at = _aware(at)

    def advance(self, delta: dt.timedelta) -> None:
        self._at += delta


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("a clock needs a timezone-aware datetime")
    return at.astimezone(dt.UTC)
