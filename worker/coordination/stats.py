"""Request statistics for Prometheus, shared across processes and hosts through Redis.

Each process counts requests, errors by class, latency buckets and rate-limit
waits in memory and adds them to one Redis hash at most once a second; the
`voicemail metrics` exporter reads that hash (plus queue depths, bulk progress
and the breaker) on each scrape. Counters only ever grow, as Prometheus expects.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from ..core import keys

STATS_KEY = keys.STATS
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FLUSH_EVERY = 1.0


class Stats:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._floats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def request(self, seconds: float, error: BaseException | None) -> None:
        with self._lock:
            self._counts["requests"] += 1
            for bound in BUCKETS:
                if seconds <= bound:
                    self._counts[f"latency_le:{bound}"] += 1
                    break
            self._floats["latency_sum"] = self._floats.get("latency_sum", 0.0) + seconds
            if error is not None:
                self._counts[f"errors:{type(error).__name__}"] += 1

    def waited(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._counts["ratelimit_waits"] += 1
            key = "ratelimit_wait_seconds"
            self._floats[key] = self._floats.get(key, 0.0) + seconds

    def due(self) -> bool:
        return time.monotonic() - self._flushed >= FLUSH_EVERY

    def take(self) -> tuple[dict[str, int], dict[str, float]]:
        with self._lock:
            counts, floats = dict(self._counts), dict(self._floats)
            self._counts.clear()
            self._floats.clear()
            self._flushed = time.monotonic()
        return counts, floats


def write(pipe: Any, counts: dict[str, int], floats: dict[str, float]) -> None:
    for field, value in counts.items():
        pipe.hincrby(STATS_KEY, field, value)
    for field, amount in floats.items():
        pipe.hincrbyfloat(STATS_KEY, field, amount)


def flush(client: Any, stats: Stats, *, force: bool = False) -> None:
    if not (force or stats.due()):
        return
    counts, floats = stats.take()
    if counts or floats:
        with client.pipeline(transaction=False) as pipe:
            write(pipe, counts, floats)
            pipe.execute()


async def aflush(client: Any, stats: Stats, *, force: bool = False) -> None:
    if not (force or stats.due()):
        return
    counts, floats = stats.take()
    if counts or floats:
        async with client.pipeline(transaction=False) as pipe:
            write(pipe, counts, floats)
            await pipe.execute()
