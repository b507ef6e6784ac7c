"""When to retry a failed API call and how long to wait: pure functions, table-tested.

Two levels, as arq and dramatiq do it:
- short retries inside the task (tenacity, `call_with_retries`), a few attempts
  a second or so apart, for blips;
- if the error is still transient, the Celery task re-queues itself with
  `requeue_delay`, so a long outage never holds a worker slot.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import tenacity

from ..core.errors import RateLimited, TransientError
from ..core.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    Junk (empty, negative, nan, inf, unparsable) gives None: the caller then
    falls back to its own backoff rather than trusting a broken header.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def should_retry(exc: BaseException) -> bool:
    """Transient errors are retried; everything else (permanent, bugs) is not."""
    return isinstance(exc, TransientError)


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    retry_after_cap: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number `attempt` (1-based).

    A Retry-After from the server wins, capped at `retry_after_cap`; otherwise
    exponential backoff with "equal jitter": a random delay between half and all of
    `base * 2**(attempt-1)`, capped at `cap`.
    """
    if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
        limit = cap if retry_after_cap is None else retry_after_cap
        return float(min(retry_after, limit))
    ceiling = min(base * 2.0 ** max(attempt - 1, 0), cap)
    return float(ceiling * (0.5 + rand() / 2))


def retry_after_of(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, RateLimited) else None


def capped_retry_after(settings: Settings, seconds: float | None) -> float:
    """A server's Retry-After as this project uses it anywhere: at most
    `VOICEMAIL_REQUEUE_MAX_DELAY`, so `Retry-After: 86400` cannot park work for a day."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return 1.0
    return min(seconds, settings.requeue_max_delay)


def in_process_delay(settings: Settings, attempt: int, exc: BaseException | None) -> float:
    return backoff_delay(
        attempt,
        base=settings.retry_base_delay,
        cap=settings.retry_max_delay,
        retry_after=retry_after_of(exc),
        retry_after_cap=settings.retry_after_max,
    )


def requeue_delay(settings: Settings, requeues: int, exc: BaseException | None) -> float:
    """Countdown for the Celery re-queue after `requeues` earlier re-queues."""
    return backoff_delay(
        requeues + 1,
        base=settings.requeue_base_delay,
        cap=settings.requeue_max_delay,
        retry_after=retry_after_of(exc),
        retry_after_cap=settings.requeue_max_delay,
    )


def wants_requeue_now(settings: Settings, exc: BaseException) -> bool:
    """A Retry-After longer than we will sleep in process skips straight to the re-queue."""
    after = retry_after_of(exc)
    return after is not None and after > settings.retry_after_max


# Told of every failed attempt, before any retry decision (the read-back's ambiguity).
OnFailure = Callable[[BaseException], None]
# Runs before every attempt but the first; raises to stop sending (a claim gone).
BeforeRetry = Callable[[], None]


class _Policy:
    """tenacity hooks for one call: 429s wait their Retry-After without spending attempts."""

    def __init__(self, settings: Settings, on_failure: OnFailure | None = None) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self.attempts = 0  # failed attempts that count against VOICEMAIL_RETRY_ATTEMPTS
        self.rate_limited = 0  # 429s, bounded separately by VOICEMAIL_RATE_LIMITED_MAX

    def count(self, exc: BaseException | None) -> bool:
        """Record a failure; True if it is worth another attempt."""
        if exc is None or not should_retry(exc) or wants_requeue_now(self.settings, exc):
            return False
        if isinstance(exc, RateLimited):
            self.rate_limited += 1
        else:
            self.attempts += 1
        return True

    def spent(self) -> bool:
        return (
            self.attempts >= self.settings.retry_attempts
            or self.rate_limited >= self.settings.rate_limited_max
        )

    def delay(self, exc: BaseException | None) -> float:
        return in_process_delay(self.settings, max(self.attempts, 1), exc)

    def retry(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and self.on_failure is not None:
            self.on_failure(exc)
        return self.count(exc)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        return self.spent()

    def wait(self, state: tenacity.RetryCallState) -> float:
        return self.delay(state.outcome.exception() if state.outcome else None)

    def log(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.debug(
            "retrying after %s (attempt %d), sleeping %.3fs",
            type(exc).__name__,
            state.attempt_number,
            delay,
        )

    def kwargs(self) -> dict[str, Any]:
        return {
            "retry": self.retry,
            "stop": self.stop,
            "wait": self.wait,
            "before_sleep": self.log,
            "reraise": True,
        }


def _after_first(settings: Settings, exc: Exception, on_failure: OnFailure | None) -> _Policy:
    """The policy once the first attempt failed; `exc` again when it is not worth another."""
    if on_failure is not None:
        on_failure(exc)
    policy = _Policy(settings, on_failure)
    if not policy.count(exc) or policy.spent():
        raise exc
    return policy


def call_with_retries(
    settings: Settings,
    fn: Callable[[], T],
    *,
    on_failure: OnFailure | None = None,
    before_retry: BeforeRetry | None = None,
) -> T:
    """Short in-process retries for a blocking call (single jobs).

    As for bulk rows, the first attempt runs outside tenacity: it is on every job's path,
    and nearly always the only one."""
    try:
        return fn()
    except Exception as exc:
        policy = _after_first(settings, exc, on_failure)
        first = exc
    time.sleep(policy.delay(first))

    def attempt() -> T:
        if before_retry is not None:
            before_retry()
        return fn()

    return tenacity.Retrying(**policy.kwargs())(attempt)


async def acall_with_retries(
    settings: Settings, fn: Callable[[], Awaitable[T]], *, on_failure: OnFailure | None = None
) -> T:
    """The same policy for a coroutine (bulk rows).

    The first attempt runs outside tenacity: nearly every row succeeds at once, and
    tenacity's bookkeeping was a tenth of the engine's CPU at thousands of rows/s.
    """
    try:
        return await fn()
    except Exception as exc:
        policy = _after_first(settings, exc, on_failure)
        first = exc
    await asyncio.sleep(policy.delay(first))

    # tenacity awaits only what a coroutine *function* returns; a lambda returning a
    # coroutine would come back unawaited, so wrap it.
    async def attempt() -> T:
        return await fn()

    return await tenacity.AsyncRetrying(**policy.kwargs())(attempt)
