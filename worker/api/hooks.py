"""What a client needs from the rate limiter, circuit breaker and statistics it is given.

The implementations share their state through Redis (`worker.coordination`); the
clients only see these protocols, so the API layer stays free of Redis.
"""

from __future__ import annotations

from typing import Protocol


class Limiter(Protocol):
    def acquire(self, token: str) -> float: ...

    def penalize(self, token: str, seconds: float) -> None: ...


class AsyncLimiter(Protocol):
    enabled: bool

    async def acquire(self, token: str) -> float: ...

    async def penalize(self, token: str, seconds: float) -> None: ...


class Breaker(Protocol):
    """Before a call, `wait_time()`: seconds to hold off (0: go). After it, `record(exc)`."""

    def wait_time(self) -> float: ...

    def record(self, exc: BaseException | None) -> None: ...


class AsyncBreaker(Protocol):
    """The same two steps, each split in a synchronous part and an awaited call made only
    when Redis must be asked: the bulk engine calls it per request.

    Before a call: `await refresh()` if `must_refresh()`, then `wait_time()`.
    After it: `record(exc)`, then `await report()` if that (or `report_due()`) says so.
    """

    def must_refresh(self) -> bool: ...

    async def refresh(self) -> None: ...

    def wait_time(self) -> float: ...

    def record(self, exc: BaseException | None) -> bool:
        """Count one outcome; True when a report to Redis is due (`report`)."""
        ...

    def report_due(self) -> bool: ...

    async def report(self) -> None: ...


class RequestStats(Protocol):
    def request(self, seconds: float, error: BaseException | None) -> None: ...

    def waited(self, seconds: float) -> None: ...
