"""Clocks the stand-ins read time from, so tests can move time instead of waiting.

Every time-dependent answer of a stand-in (token expiry, task status, results
expiry, GitHub token lifetime) is computed from ``clock.now()``. Tests hand in a
:class:`ManualClock` and call ``advance()``; the demo uses :class:`SystemClock`.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """Anything with a ``now()`` that returns a timezone-aware UTC datetime."""

    def now(self) -> datetime: ...


def _as_utc(moment: datetime) -> datetime:
    """Treat naive datetimes as UTC, so callers cannot mix naive and aware values."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told to.

    Without ``start`` it begins at the current wall-clock second, so tokens and
    timestamps it produces still look plausible to anything outside the test.
    Thread-safe: stand-in servers read it from their own threads while the test
    thread advances it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(timezone.utc).replace(microsecond=0)
        self._now = _as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward; use set() to jump")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (naive values are read as UTC)."""
        with self._lock:
            self._now = _as_utc(moment)
