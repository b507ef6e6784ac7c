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
    def pause(self) -> float: ...

    def record(self, exc: BaseException | None) -> None: ...


class AsyncBreaker(Protocol):
    """Split in a synchronous check and an awaited call only when Redis must be asked:
    the bulk engine calls it per request."""

    def must_ask(self) -> bool: ...

    async def ask(self) -> None: ...

    def remaining(self) -> float: ...

    def note(self, exc: BaseException | None) -> bool:
        """Count one outcome; True when a report to Redis is due (`report`)."""
        ...

    def due(self) -> bool: ...

    async def report(self) -> None: ...


class RequestStats(Protocol):
    def request(self, seconds: float, error: BaseException | None) -> None: ...

    def waited(self, seconds: float) -> None: ...
