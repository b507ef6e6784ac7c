"""A circuit breaker shared by every worker through Redis.

When most recent calls to the API fail (5xx, timeouts, dropped connections, not
4xx or 429), the breaker opens for `VOICEMAIL_BREAKER_COOLDOWN` seconds and
every worker pauses its calls instead of feeding a retry storm. When the cooldown
ends it is half-open: one process, the first to ask, sends a probe while the others
keep pausing; the probe's success closes it, its failure opens it again.

Each process counts outcomes locally and reports them every `REPORT_EVERY`
seconds, or after `REPORT_BATCH` calls (at once while half-open), with one Lua call
that answers with the breaker's state; between reports the process uses its cached
state. Times come from Redis's clock, turned into a pause on the process's own
monotonic clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from ..core import keys, lua
from ..core.errors import ApiConnectionError, ApiTimeout, ServerError

OPEN_KEY = keys.BREAKER_OPEN
WINDOW_KEY = keys.BREAKER_WINDOW
HALF_OPEN_KEY = keys.BREAKER_HALF_OPEN
PROBE_KEY = keys.BREAKER_PROBE
REPORT_EVERY = 0.5
REPORT_BATCH = 50
BREAKING = (ServerError, ApiTimeout, ApiConnectionError)

REPORT_SCRIPT = lua.load(__package__, "breaker.lua")


def is_failure(exc: BaseException | None) -> bool:
    return isinstance(exc, BREAKING)


class _State:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.pause_until = 0.0  # time.monotonic()
        self.half_open = False
        self.probing = False
        self.reported = 0.0

    def due(self, now: float, batch: int) -> bool:
        # On a timer, or sooner when a window's worth of calls piled up: a burst of
        # failures must count before it is over. Half-open, every outcome counts at once.
        return (
            self.half_open or now - self.reported >= REPORT_EVERY or self.ok + self.failed >= batch
        )

    def take(self, now: float) -> tuple[int, int]:
        counts = (self.ok, self.failed)
        self.ok = self.failed = 0
        self.reported = now
        return counts

    def learn(self, answer: Any, now: float) -> None:
        pause, half_open, probe = answer
        self.pause_until = now + float(pause)
        self.half_open = bool(int(half_open))
        self.probing = bool(int(probe))

    def wait_time(self, now: float) -> float:
        return max(self.pause_until - now, 0.0)

    def must_refresh(self, now: float) -> bool:
        """Half-open and not the prober: only Redis knows when calls may go again."""
        return self.half_open and not self.probing and now >= self.pause_until


class _Base:
    def __init__(self, client: Any, settings: Any) -> None:
        self._script = client.register_script(REPORT_SCRIPT)
        self._args = (
            settings.breaker_window,
            settings.breaker_min_calls,
            settings.breaker_threshold,
            settings.breaker_cooldown,
            uuid.uuid4().hex,
        )
        self._state = _State()
        # A report every 50 calls at most: at thousands of calls a second, reporting
        # more often cost a tenth of the bulk engine's time.
        self._batch = max(settings.breaker_min_calls, REPORT_BATCH)
        self.enabled = settings.breaker_min_calls > 0

    def _count(self, exc: BaseException | None) -> None:
        if is_failure(exc):
            self._state.failed += 1
        else:
            self._state.ok += 1

    def _keys(self) -> list[str]:
        return [OPEN_KEY, WINDOW_KEY, HALF_OPEN_KEY, PROBE_KEY]


class Breaker(_Base):
    """For blocking callers (single jobs in the thread pool)."""

    def __init__(self, client: Any, settings: Any) -> None:
        super().__init__(client, settings)
        self._lock = threading.Lock()

    def wait_time(self) -> float:
        """Seconds to hold off before calling the API (0 while closed, or for the prober)."""
        now = time.monotonic()
        if self.enabled and self._state.must_refresh(now):
            self._report(now, 0, 0)
        return self._state.wait_time(time.monotonic())

    def record(self, exc: BaseException | None) -> None:
        """Count one outcome, and report the counts to Redis when a report is due."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            self._count(exc)
            if not self._state.due(now, self._batch):
                return
            ok, failed = self._state.take(now)
        self._report(now, ok, failed)

    def _report(self, now: float, ok: int, failed: int) -> None:
        answer = self._script(keys=self._keys(), args=[ok, failed, *self._args])
        self._state.learn(answer, now)


class AsyncBreaker(_Base):
    """For the bulk engine's event loop."""

    def must_refresh(self) -> bool:
        """Half-open and not the prober: `refresh` before `wait_time` means anything."""
        return self.enabled and self._state.must_refresh(time.monotonic())

    async def refresh(self) -> None:
        await self._report(time.monotonic(), 0, 0)

    def wait_time(self) -> float:
        return self._state.wait_time(time.monotonic())

    def record(self, exc: BaseException | None) -> bool:
        """Count one outcome; True when a report to Redis is due (`report`)."""
        if not self.enabled:
            return False
        self._count(exc)
        return self.report_due()

    def report_due(self) -> bool:
        return self.enabled and self._state.due(time.monotonic(), self._batch)

    async def report(self) -> None:
        now = time.monotonic()
        ok, failed = self._state.take(now)
        await self._report(now, ok, failed)

    async def _report(self, now: float, ok: int, failed: int) -> None:
        answer = await self._script(keys=self._keys(), args=[ok, failed, *self._args])
        self._state.learn(answer, now)
