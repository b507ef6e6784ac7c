"""A circuit breaker shared by every worker through Redis.

When most recent calls to the API fail (5xx, timeouts, dropped connections, not
4xx or 429), the breaker opens for `VOICEMAIL_BREAKER_COOLDOWN` seconds and
every worker pauses its calls instead of feeding a retry storm; then it lets
calls through again and opens once more only if they keep failing.

Each process counts outcomes locally and reports them every `REPORT_EVERY`
seconds, or after `REPORT_BATCH` calls, with one Lua call that answers
with the breaker's state; between reports the process uses its cached state. So
the breaker costs a few Redis calls a second per process, not one per request.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..core import constants as C
from ..core import lua
from ..core.errors import ApiConnectionError, ApiTimeout, ServerError

OPEN_KEY = C.KEY_PREFIX + "breaker:open_until"
WINDOW_KEY = C.KEY_PREFIX + "breaker:window"
REPORT_EVERY = 0.5
REPORT_BATCH = 50
BREAKING = (ServerError, ApiTimeout, ApiConnectionError)

REPORT_SCRIPT = lua.load(__package__, "breaker.lua")


def is_failure(exc: BaseException | None) -> bool:
    return isinstance(exc, BREAKING)


class _Counts:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.open_until = 0.0
        self.reported = 0.0

    def due(self, now: float, batch: int) -> bool:
        # On a timer, or sooner when a window's worth of calls piled up: a burst of
        # failures must count before it is over.
        return now - self.reported >= REPORT_EVERY or self.ok + self.failed >= batch

    def take(self, now: float) -> tuple[int, int]:
        counts = (self.ok, self.failed)
        self.ok = self.failed = 0
        self.reported = now
        return counts


class _Base:
    def __init__(self, client: Any, settings: Any) -> None:
        self._script = client.register_script(REPORT_SCRIPT)
        self._args = (
            settings.breaker_window,
            settings.breaker_min_calls,
            settings.breaker_threshold,
            settings.breaker_cooldown,
        )
        self._counts = _Counts()
        # A report every 50 calls at most: at thousands of calls a second, reporting
        # more often cost a tenth of the bulk engine's time.
        self._batch = max(settings.breaker_min_calls, REPORT_BATCH)
        self.enabled = settings.breaker_min_calls > 0

    def pause(self) -> float:
        """Seconds to hold off before calling the API (0 while the breaker is closed)."""
        return max(self._counts.open_until - time.time(), 0.0)

    def _note(self, exc: BaseException | None) -> None:
        if is_failure(exc):
            self._counts.failed += 1
        else:
            self._counts.ok += 1


class Breaker(_Base):
    """For blocking callers (single jobs in the thread pool)."""

    def __init__(self, client: Any, settings: Any) -> None:
        super().__init__(client, settings)
        self._lock = threading.Lock()

    def record(self, exc: BaseException | None) -> None:
        if not self.enabled:
            return
        now = time.time()
        with self._lock:
            self._note(exc)
            if not self._counts.due(now, self._batch):
                return
            ok, failed = self._counts.take(now)
        answer = self._script(keys=[OPEN_KEY, WINDOW_KEY], args=[ok, failed, *self._args])
        self._counts.open_until = float(answer)


class AsyncBreaker(_Base):
    """For the bulk engine's event loop."""

    async def record(self, exc: BaseException | None) -> None:
        if not self.enabled:
            return
        now = time.time()
        self._note(exc)
        if not self._counts.due(now, self._batch):
            return
        ok, failed = self._counts.take(now)
        answer = await self._script(keys=[OPEN_KEY, WINDOW_KEY], args=[ok, failed, *self._args])
        self._counts.open_until = float(answer)
