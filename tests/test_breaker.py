"""The shared circuit breaker's script on a real Redis, and an outage through real workers."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import pytest
import redis

from simulator import stack
from tasks.bulk import bulk_status, submit_bulk
from worker.coordination import breaker as B
from worker.core.errors import ApiError, ServerError
from worker.core.settings import load_settings

from .conftest import SimAccount


@pytest.fixture
def fresh(redis_client: redis.Redis) -> None:
    redis_client.delete(B.OPEN_KEY, B.WINDOW_KEY, B.HALF_OPEN_KEY, B.PROBE_KEY)


@pytest.mark.usefixtures("fresh")
def test_opens_when_most_calls_fail_then_closes(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(B, "REPORT_EVERY", 0.0)
    settings = load_settings(VOICEMAIL_BREAKER_MIN_CALLS=10, VOICEMAIL_BREAKER_COOLDOWN=0.5)
    breaker = B.Breaker(redis_client, settings)
    for _ in range(5):
        breaker.record(None)
        breaker.record(ApiError("4xx is the caller's fault, not an outage"))
    assert breaker.wait_time() == 0
    for _ in range(12):
        breaker.record(ServerError("502"))
    assert 0 < breaker.wait_time() <= 0.5
    # Another process learns it on its next report.
    other = B.Breaker(redis_client, settings)
    other.record(None)
    assert other.wait_time() > 0
    time.sleep(0.55)
    breaker.record(None)  # half-open: a fresh window, calls go through again
    assert breaker.wait_time() == 0


# Race 8 in docs/reliability.md: one clock for the breaker, and one probe when half-open.


@pytest.mark.usefixtures("fresh")
def test_a_skewed_host_clock_does_not_close_the_breaker(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(B, "REPORT_EVERY", 0.0)
    settings = load_settings(VOICEMAIL_BREAKER_MIN_CALLS=5, VOICEMAIL_BREAKER_COOLDOWN=30)
    breaker = B.Breaker(redis_client, settings)
    for _ in range(6):
        breaker.record(ServerError("502"))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)  # this host runs 2 min ahead
    assert breaker.wait_time() > 25


@pytest.mark.usefixtures("fresh")
def test_half_open_lets_one_probe_through(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(B, "REPORT_EVERY", 0.0)
    settings = load_settings(VOICEMAIL_BREAKER_MIN_CALLS=5, VOICEMAIL_BREAKER_COOLDOWN=0.3)
    first, second = B.Breaker(redis_client, settings), B.Breaker(redis_client, settings)
    for _ in range(6):
        first.record(ServerError("502"))
    second.record(None)  # learns the breaker is open
    assert first.wait_time() > 0 and second.wait_time() > 0
    stack.wait_until(lambda: first.wait_time() == 0, 5, "the cooldown's end")
    assert second.wait_time() > 0  # `first` probes; `second` waits for its answer
    first.record(None)  # the probe succeeded
    stack.wait_until(lambda: second.wait_time() == 0, 5, "the breaker closing")


@pytest.mark.integration
@pytest.mark.usefixtures("worker", "fresh")
def test_outage_pauses_calls_and_recovers(
    make_account: Callable[..., SimAccount],
    sim: stack.SimulatorControl,
    redis_client: redis.Redis,
) -> None:
    accounts = [make_account() for _ in range(200)]
    for account in accounts[:60]:
        sim.script(account.name, ["503"] * 3)  # the first 60 rows meet an outage
    rows = [{"account": a.name, "send": True, "email": "cb@acme.ru"} for a in accounts]
    bulk_id = submit_bulk(rows)
    opened: list[bool] = []

    def finished() -> bool:
        if redis_client.exists(B.OPEN_KEY):
            opened.append(True)
        return bulk_status(bulk_id).done

    stack.wait_until(finished, 60, "the bulk", step=0.02)
    assert opened, "the breaker never opened during the outage"
    status = bulk_status(bulk_id)
    assert (status.succeeded, status.failed) == (200, 0)
    assert all(sim.account(a.name)["email"] == "cb@acme.ru" for a in accounts)
    # 180 failures were scripted; no retry storm on top: each row at most its attempts,
    # and for each of the 60 rows whose 503s were ambiguous, a read before sending again
    # (one per re-run of its chunk: at most two here, the breaker pausing the first).
    # (Counted on this bulk's accounts: read-backs of another test's may land meanwhile.)
    assert sum(sim.account(a.name)["requests"] for a in accounts) <= 200 + 180 + 2 * 60


@pytest.mark.integration
@pytest.mark.usefixtures("worker", "fresh")
def test_every_account_reaches_its_target_through_api_faults(
    make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    accounts = [make_account() for _ in range(400)]
    before = sim.stats()
    sim.faults(
        error_rate=0.05,
        html_502_rate=0.02,
        reset_rate=0.01,
        rate_limit_rate=0.02,
        retry_after="1",
        slow_rate=0.005,
        slow_seconds=3,
    )
    try:
        rows = [{"account": a.name, "send": True, "email": "faults@acme.ru"} for a in accounts]
        bulk_id = submit_bulk(rows)
        stack.wait_until(lambda: bulk_status(bulk_id).done, 120, "the bulk")
    finally:
        sim.faults(error_rate=0, html_502_rate=0, reset_rate=0, rate_limit_rate=0, slow_rate=0)
    status = bulk_status(bulk_id)
    assert (status.succeeded, status.failed) == (400, 0)
    assert all(sim.account(a.name)["email"] == "faults@acme.ru" for a in accounts)
    after = sim.stats()
    faults = collections.Counter(after["faults_injected"])
    faults.subtract(before["faults_injected"])
    injected = sum(faults.values())
    assert injected > 0
    # Only this bulk's accounts: the read-backs an earlier test's ambiguous answers
    # scheduled (VOICEMAIL_VERIFY_AFTER later) may land while this one runs.
    sent = sum(sim.account(a.name)["requests"] for a in accounts)
    # Bounded: one request per row plus, at most, one per injected fault, and two reads per
    # ambiguous one (a gateway's 5xx, a reset, a slow answer past the read timeout): that
    # PATCH may have been applied, so a row that comes back with its claim unsettled reads
    # the account before it sends again, rather than send twice, and the account is read
    # back VOICEMAIL_VERIFY_AFTER later, which a slow run may see.
    ambiguous = faults["503"] + faults["502"] + faults["reset"] + faults["slow"]
    assert sent <= 400 + injected + 2 * ambiguous
    assert max(sim.account(a.name)["requests"] for a in accounts) <= 6
