"""The races a code read found in the ordering promise, each with a test that fails on the
code before its fix (RELIABILITY.md, "Races fixed")."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from simulator import stack
from tasks import enqueue_update, wait
from worker.api.client import PlusofonClient
from worker.api.models import Credentials
from worker.coordination import breaker as B
from worker.coordination import ordering as O
from worker.core.errors import RateLimited, ServerError
from worker.core.settings import load_settings
from worker.store.credentials import CredentialStore

from .conftest import TEST_SECRET_KEY, SimAccount, worker_of_its_own

MakeAccount = Callable[..., SimAccount]


# Update numbers come from Redis's clock in microseconds; small test numbers sit on top.
BASE = int(time.time() * 1_000_000)


def _claim(client: redis.Redis, owner: str, account: str, seq: int, ttl_ms: int = 120_000) -> int:
    keys, args = O.claim_call(owner, [(account, BASE + seq)])
    args[1] = ttl_ms
    (verdict,) = client.register_script(O.CLAIM_SCRIPT)(keys=keys, args=args)
    return int(verdict)


# 1. Locks are renewed while a call runs ---------------------------------------------


def test_a_held_lock_is_renewed_while_its_call_runs(redis_client: redis.Redis) -> None:
    account = f"renew-{uuid.uuid4().hex[:8]}"
    first, second = O.fence("w1"), O.fence("w2")
    assert _claim(redis_client, first, account, 10, ttl_ms=400) == O.CLAIMED
    renewer = O.LockRenewer(redis_client, every=0.1)
    renewer.hold(account, first)
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # well past the 400 ms the claim was given
            assert _claim(redis_client, second, account, 11) == O.LOCKED
            time.sleep(0.1)
    finally:
        renewer.drop(account, first)
        renewer.stop()


# 2. A fencing token per delivery ---------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_duplicate_delivery_does_not_share_the_first_ones_lock(
    make_account: MakeAccount,
    sim: stack.SimulatorControl,
    foreign_app: Celery,
    redis_client: redis.Redis,
) -> None:
    """Two copies of one message (same id, same number) at once: one PATCH, not two."""
    account = make_account()
    sim.script(account.name, ["slow:1.5"])
    job = str(uuid.uuid4())
    seq = O.next_seq(redis_client)  # a number the counter handed out, as a producer would
    for _ in range(2):
        foreign_app.send_task(
            "voicemail.update",
            args=[account.name, True, "fence@acme.ru"],
            kwargs={"seq": seq},
            task_id=job,
        )
    # The second copy found the account locked by the first and waited for it.
    stack.wait_until(
        lambda: redis_client.get(f"voicemail:lockwaits:{job}") is not None, 20, "a lock wait"
    )
    stack.wait_until(
        lambda: (
            redis_client.hget(O.state_key(account.name), "o") is None
            and int(redis_client.get(f"voicemail:lockwaits:{job}") or 0) >= 1
            and wait(job, timeout=1).ok
        ),
        30,
        "both copies settled",
    )
    assert sim.account(account.name)["patches"] == 1


# 3. A by-name update keeps its number on redelivery --------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_a_redelivered_by_name_update_never_overwrites_a_newer_one(
    make_account: MakeAccount, sim: stack.SimulatorControl, foreign_app: Celery
) -> None:
    account = make_account()
    job = str(uuid.uuid4())
    old = foreign_app.send_task(
        "voicemail.update", args=[account.name, True, "old@acme.ru"], task_id=job
    )
    assert old.get(timeout=20)["email"] == "old@acme.ru"
    assert wait(enqueue_update(account.name, False, "new@acme.ru"), timeout=20).ok
    old.forget()  # so the result read below is the redelivery's own
    # The broker hands the first message out again (same id, still no number).
    again = foreign_app.send_task(
        "voicemail.update", args=[account.name, True, "old@acme.ru"], task_id=job
    )
    again.get(timeout=20)
    state = sim.account(account.name)
    assert (state["email"], state["send"]) == ("new@acme.ru", False)
    assert state["patches"] == 2


# 4. Retry-After is capped everywhere ----------------------------------------------


class _RecordingLimiter:
    def __init__(self) -> None:
        self.penalties: list[float] = []

    def acquire(self, token: str) -> float:
        return 0.0

    def penalize(self, token: str, seconds: float) -> None:
        self.penalties.append(seconds)


def test_a_huge_retry_after_parks_a_token_no_longer_than_the_cap() -> None:
    settings = load_settings(PLUSOFON_API_URL="http://api.test", VOICEMAIL_REQUEUE_MAX_DELAY=600)
    limiter = _RecordingLimiter()
    transport = httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"Retry-After": "86400"}, json={})
    )
    with (
        PlusofonClient(settings, transport=transport, limiter=limiter) as client,
        pytest.raises(RateLimited),
    ):
        client.get_voicemail(Credentials("acme", "t"))
    assert limiter.penalties == [600]


# 5. Redis trouble never fails an applied change ------------------------------------


class _BrokenBreaker:
    def wait_time(self) -> float:
        return 0.0

    def record(self, exc: BaseException | None) -> None:
        raise redis.ConnectionError("Redis went away")


def test_redis_gone_after_an_applied_patch_is_not_a_failure() -> None:
    settings = load_settings(PLUSOFON_API_URL="http://api.test")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"success": True}))
    with PlusofonClient(settings, transport=transport, breaker=_BrokenBreaker()) as client:
        result = client.set_voicemail(Credentials("acme", "t"), True, "a@b.ru")
    assert result.email == "a@b.ru"


# 6. Lock waits hold no pool thread ---------------------------------------------------


@pytest.fixture
def two_slots(simulator: stack.Service, tmp_path: Path) -> Iterator[Celery]:
    """One worker with two threads, and no other worker to help out."""
    with worker_of_its_own(simulator.url, tmp_path, "two", concurrency=2) as app:
        yield app


@pytest.mark.integration
def test_a_job_waiting_for_a_locked_account_holds_no_thread(
    make_account: MakeAccount, sim: stack.SimulatorControl, two_slots: Celery
) -> None:
    busy, other = make_account(imported=False), make_account(imported=False)
    store = CredentialStore(redis.Redis.from_url(two_slots.conf.broker_url), TEST_SECRET_KEY)
    store.put(busy.name, busy.token)
    store.put(other.name, other.token)
    sim.script(busy.name, ["slow:3"])

    def update(account: str, email: str) -> Any:
        return two_slots.send_task("voicemail.update", args=[account, True, email])

    first = update(busy.name, "first@acme.ru")  # holds the account 3 s
    stack.wait_until(lambda: sim.account(busy.name)["requests"] >= 1, 20, "the slow PATCH")
    waiting = update(busy.name, "second@acme.ru")  # waits for the account's lock
    quick = update(other.name, "quick@acme.ru")
    assert quick.get(timeout=20)["email"] == "quick@acme.ru"
    # Had the waiting job held the second thread, `quick` would have run only after the
    # slow PATCH freed the first one.
    assert not first.ready()
    assert first.get(timeout=20)["email"] == "first@acme.ru"
    assert waiting.get(timeout=30)["email"] == "second@acme.ru"


# 7. The engine stops every row of a chunk that fails unexpectedly -------------------


def test_an_unexpected_row_error_cancels_its_siblings(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, simulator: stack.Service
) -> None:
    from worker.coordination.bulk_records import BulkRow, Keys
    from worker.engine import chunk_run as engine_chunk
    from worker.engine.engine_context import EngineContext

    rows = [BulkRow(i + 2, f"tg-{uuid.uuid4().hex[:6]}", True, "x@e.ru", 0) for i in range(5)]
    keys = Keys(uuid.uuid4().hex)
    redis_client.hset(keys.meta, mapping={"created_at": "1", "total": len(rows)})
    redis_client.set(keys.chunk(0), json.dumps([row.to_json() for row in rows]))
    cancelled: list[str] = []

    async def apply(ctx: Any, row: Any, blob: Any, *flags: bool, **guard: Any) -> str:
        if row.line == 2:
            raise ValueError("a bug in one row")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(row.account)
            raise
        return "s"

    monkeypatch.setattr(engine_chunk, "apply_row", apply)
    settings = load_settings(PLUSOFON_API_URL=simulator.url, VOICEMAIL_BULK_PROCESSES=0)
    bulk_id = keys.meta.split("{")[1].rstrip("}")

    async def run() -> None:
        ctx = EngineContext(settings)
        try:
            await engine_chunk.process_chunk(ctx, bulk_id, 0, final=False)
        finally:
            await ctx.aclose()

    with pytest.raises(ValueError, match="a bug in one row"):
        asyncio.run(run())
    assert sorted(cancelled) == sorted(r.account for r in rows[1:])


# 8. One clock for the breaker, and one probe when half-open -------------------------


@pytest.fixture
def fresh_breaker(redis_client: redis.Redis) -> None:
    redis_client.delete(B.OPEN_KEY, B.WINDOW_KEY, B.HALF_OPEN_KEY, B.PROBE_KEY)


@pytest.mark.usefixtures("fresh_breaker")
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


@pytest.mark.usefixtures("fresh_breaker")
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
