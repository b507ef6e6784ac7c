"""A request rate shared by every worker process on every host, enforced in Redis.

Each request reserves the next free slot with one atomic Lua call: the global
schedule (`VOICEMAIL_RATE_LIMIT` requests/s) and the schedule of its token
(`VOICEMAIL_TOKEN_RATE_LIMIT`) both move on by one interval, and the caller
sleeps until its slot. That is GCRA with no burst: requests leave evenly spaced,
so no one-second window at the API sees more than the limit plus scheduling
jitter. Celery's own `rate_limit` is per worker, which is why this exists.

A 429 pushes its token's schedule past the Retry-After (`penalize`), so every
worker holding that token waits instead of spending retries.

Clock: Redis's TIME, so hosts with skewed clocks share one schedule. Token keys
are a hash of the token, never the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from ..core import keys, lua

RESERVE_SCRIPT = lua.load(__package__, "reserve.lua")
PENALIZE_SCRIPT = lua.load(__package__, "penalize.lua")

GLOBAL_KEY = keys.RATE_GLOBAL


def token_key(token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()[:24]
    return keys.token_rate(digest)


def _interval_us(rate: float | None) -> int:
    return round(1_000_000 / rate) if rate else 0


class _Base:
    def __init__(self, client: Any, rate: float | None, token_rate: float | None) -> None:
        self._reserve = client.register_script(RESERVE_SCRIPT)
        self._penalize = client.register_script(PENALIZE_SCRIPT)
        self._intervals = (_interval_us(rate), _interval_us(token_rate))
        # No limits configured: no Redis call per request; a 429 then only waits locally.
        self.enabled = any(self._intervals)


class RateLimiter(_Base):
    """Blocking flavour, for single jobs in the thread pool."""

    def acquire(self, token: str) -> float:
        if not self.enabled:
            return 0.0
        wait = int(self._reserve(keys=[GLOBAL_KEY, token_key(token)], args=self._intervals)) / 1e6
        if wait > 0:
            time.sleep(wait)
        return wait

    def penalize(self, token: str, seconds: float) -> None:
        if self.enabled and seconds > 0:
            self._penalize(keys=[token_key(token)], args=[round(seconds * 1e6)])


class AsyncRateLimiter(_Base):
    """asyncio flavour, for bulk chunks; same keys and scripts, so both share one schedule."""

    async def acquire(self, token: str) -> float:
        if not self.enabled:
            return 0.0
        raw = await self._reserve(keys=[GLOBAL_KEY, token_key(token)], args=self._intervals)
        wait = int(raw) / 1e6
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def penalize(self, token: str, seconds: float) -> None:
        if self.enabled and seconds > 0:
            await self._penalize(keys=[token_key(token)], args=[round(seconds * 1e6)])
