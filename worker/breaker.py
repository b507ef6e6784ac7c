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

from . import _constants as C
from .errors import ApiConnectionError, ApiTimeout, ServerError

OPEN_KEY = C.KEY_PREFIX + "breaker:open_until"
WINDOW_KEY = C.KEY_PREFIX + "breaker:window"
REPORT_EVERY = 0.5
REPORT_BATCH = 50
BREAKING = (ServerError, ApiTimeout, ApiConnectionError)

# KEYS: open_until, window hash. ARGV: ok, failed, window s, min calls, threshold, cooldown s.
# Returns open_until as a string (0 when closed).
_REPORT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local open_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if open_until > now then return tostring(open_until) end
local ok, failed = tonumber(ARGV[1]), tonumber(ARGV[2])
if ok > 0 then redis.call('HINCRBY', KEYS[2], 'ok', ok) end
if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
local total_ok = tonumber(redis.call('HGET', KEYS[2], 'ok') or '0')
local total_failed = tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
local total = total_ok + total_failed
if total >= tonumber(ARGV[4]) and total_failed >= total * tonumber(ARGV[5]) then
  open_until = now + tonumber(ARGV[6])
  redis.call('SET', KEYS[1], tostring(open_until), 'EX', math.ceil(tonumber(ARGV[6])) + 1)
  -- a fresh window after the pause: old failures must not reopen it at once
  redis.call('DEL', KEYS[2])
  return tostring(open_until)
end
return '0'
"""


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
        self._script = client.register_script(_REPORT)
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
