"""The races a code read found in the ordering promise, each with a test that fails on the
code before its fix (docs/reliability.md, "Races fixed"). Races 4 and 5 are the client's
(test_client.py), 7 the engine's (test_engine.py), 8 the breaker's (test_breaker.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from simulator import stack
from tasks import enqueue_update, wait
from worker.coordination import ordering as O
from worker.store.credentials import CredentialStore

from .conftest import TEST_SECRET_KEY, SimAccount, worker_of_its_own

MakeAccount = Callable[..., SimAccount]


# Update numbers come from Redis's clock in microseconds; small test numbers sit on top.
BASE = int(time.time() * 1_000_000)


def _claim(client: redis.Redis, owner: str, account: str, seq: int, ttl_ms: int = 120_000) -> int:
    ordering = O.Ordering(client, lock_ttl=ttl_ms / 1000)
    (verdict,) = ordering.claim(owner, [(account, BASE + seq)])
    return verdict


# 1. Locks are renewed while a call runs ---------------------------------------------


def test_a_held_lock_is_renewed_while_its_call_runs(redis_client: redis.Redis) -> None:
    account = f"renew-{uuid.uuid4().hex[:8]}"
    first, second = O.new_lock_owner("w1"), O.new_lock_owner("w2")
    assert _claim(redis_client, first, account, 10, ttl_ms=400) == O.Verdict.CLAIMED
    renewer = O.LockRenewer(O.Ordering(redis_client), every=0.1)
    renewer.hold(account, first)
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # well past the 400 ms the claim was given
            assert _claim(redis_client, second, account, 11) == O.Verdict.LOCKED
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
    seq = O.Ordering(
        redis_client
    ).next_seq()  # a number the counter handed out, as a producer would
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
            O.Ordering(redis_client).lock_owner_of(account.name) is None
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
