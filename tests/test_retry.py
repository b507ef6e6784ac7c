from __future__ import annotations

import email.utils
import math

import pytest

from worker.api.retry import (
    backoff_delay,
    call_with_retries,
    parse_retry_after,
    requeue_delay,
    should_retry,
    wants_requeue_now,
)
from worker.core import errors
from worker.core.settings import load_settings

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        ("2.5", 2.5),
        ("  10 ", 10.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("", None),
        (None, None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Wed, 99 Foo 2020", None),
        ("1e999", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (errors.ServerError("502"), True),
        (errors.RateLimited("429"), True),
        (errors.ApiTimeout("t"), True),
        (errors.ApiConnectionError("c"), True),
        (errors.UserNotFound("User not found."), False),
        (errors.AuthError("401"), False),
        (errors.ValidationError("422"), False),
        (errors.ApiError("x"), False),
        (ValueError("bug"), False),
    ],
)
def test_should_retry(exc: BaseException, expected: bool) -> None:
    assert should_retry(exc) is expected


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (1, 0.0, None, 0.25),  # half of base
        (1, 1.0, None, 0.5),  # all of base
        (3, 1.0, None, 2.0),  # base * 2**2
        (10, 1.0, None, 8.0),  # capped
        (1, 0.5, 3.0, 3.0),  # Retry-After wins
        (1, 0.5, 100.0, 30.0),  # ...capped
        (1, 1.0, math.nan, 0.5),  # junk ignored
    ],
)
def test_backoff_delay(
    attempt: int, rand: float, retry_after: float | None, expected: float
) -> None:
    got = backoff_delay(
        attempt,
        base=0.5,
        cap=8.0,
        retry_after=retry_after,
        retry_after_cap=30.0,
        rand=lambda: rand,
    )
    assert got == pytest.approx(expected)


def test_requeue_delay_grows_and_is_capped() -> None:
    settings = load_settings()
    delays = [requeue_delay(settings, n, errors.ServerError("x")) for n in range(12)]
    assert all(d <= settings.requeue_max_delay for d in delays)
    assert delays[-1] >= settings.requeue_max_delay / 2
    assert requeue_delay(settings, 0, errors.RateLimited("x", retry_after=42)) == 42


def test_long_retry_after_goes_straight_to_requeue() -> None:
    settings = load_settings()
    assert wants_requeue_now(settings, errors.RateLimited("x", retry_after=3600))
    assert not wants_requeue_now(settings, errors.RateLimited("x", retry_after=1))
    assert not wants_requeue_now(settings, errors.ServerError("x"))


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


FAST = {"VOICEMAIL_RETRY_BASE_DELAY": 0, "VOICEMAIL_RETRY_ATTEMPTS": 3}


def test_transient_errors_are_retried_to_success() -> None:
    fn = Flaky([errors.ServerError("502"), errors.ApiTimeout("t")])
    assert call_with_retries(load_settings(**FAST), fn) == "ok"
    assert fn.calls == 3


def test_attempts_are_bounded() -> None:
    fn = Flaky([errors.ServerError("502")] * 5)
    with pytest.raises(errors.ServerError):
        call_with_retries(load_settings(**FAST), fn)
    assert fn.calls == 3


def test_permanent_errors_fail_at_once() -> None:
    fn = Flaky([errors.UserNotFound("User not found.")])
    with pytest.raises(errors.UserNotFound):
        call_with_retries(load_settings(**FAST), fn)
    assert fn.calls == 1
