"""Per-account order, no concurrent updates of one account, idempotent redelivery."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from simulator import stack
from tasks import enqueue_update, wait
from tasks.bulk import bulk_status, submit_bulk

from .conftest import SimAccount

pytestmark = [pytest.mark.integration]
MakeAccount = Callable[..., SimAccount]


@pytest.mark.usefixtures("worker")
def test_a_delayed_update_never_overwrites_a_later_one(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    # The first update meets an outage (3 attempts fail): it is re-queued with a countdown.
    sim.script(account.name, ["503", "503", "503"])
    first = enqueue_update(account.name, True, "old@acme.ru")
    stack.wait_until(lambda: sim.account(account.name)["requests"] >= 3, 20, "the outage")
    second = enqueue_update(account.name, False, "new@acme.ru")
    assert wait(second, timeout=20).ok
    late = wait(first, timeout=30)
    assert late.ok
    assert late.result is not None and late.result.get("superseded") is True
    state = sim.account(account.name)
    assert (state["email"], state["send"]) == ("new@acme.ru", False)
    assert state["patches"] == 1


@pytest.mark.usefixtures("worker")
def test_updates_of_one_account_never_overlap(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    sim.script(account.name, ["slow:1"])
    jobs = [enqueue_update(account.name, True, f"n{i}@acme.ru") for i in range(3)]
    assert all(wait(job, timeout=30).ok for job in jobs)
    times = sim.account(account.name)["times"]
    # The first PATCH was held 1 s by the API; the others waited for its lock.
    assert times[1] - times[0] >= 0.95, times
    assert sim.account(account.name)["email"] == "n2@acme.ru"


@pytest.mark.usefixtures("worker")
def test_redelivered_update_is_not_applied_again(
    make_account: MakeAccount, sim: stack.SimulatorControl, foreign_app: Celery
) -> None:
    account = make_account()
    job = enqueue_update(account.name, True, "once@acme.ru")
    assert wait(job, timeout=20).ok
    seq = (foreign_app.AsyncResult(job).kwargs or {})["seq"]  # what the producer gave it
    # The same message again, as the broker would redeliver it (same id, same seq).
    again = foreign_app.send_task(
        "voicemail.update",
        args=[account.name, True, "once@acme.ru"],
        kwargs={"seq": seq},
        task_id=job,
    )
    assert again.get(timeout=20)["email"] == "once@acme.ru"
    assert sim.account(account.name)["patches"] == 1


@pytest.mark.usefixtures("worker")
def test_idempotency_key_enqueues_once(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    key = f"order-{account.name}"
    first = enqueue_update(account.name, True, "k@acme.ru", idempotency_key=key)
    second = enqueue_update(account.name, True, "k@acme.ru", idempotency_key=key)
    assert first == second
    assert wait(first, timeout=20).ok
    assert sim.account(account.name)["patches"] == 1


@pytest.mark.usefixtures("worker")
def test_bulk_idempotency_key_and_superseded_rows(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    accounts = [make_account() for _ in range(3)]
    rows = [{"account": a.name, "send": True, "email": "bulk@acme.ru"} for a in accounts]
    key = f"bulk-{accounts[0].name}"
    first = submit_bulk(rows, idempotency_key=key)
    assert submit_bulk(rows, idempotency_key=key) == first
    stack.wait_until(lambda: bulk_status(first).done, 30, "the bulk")
    assert bulk_status(first).succeeded == 3
    assert all(sim.account(a.name)["patches"] == 1 for a in accounts)


def test_renew_keeps_only_our_locks(redis_client: Any) -> None:
    from worker.coordination.ordering import RENEW_SCRIPT, state_key

    mine, theirs = state_key("renew-mine"), state_key("renew-theirs")
    soon = int(time.time() * 1000) + 1000
    redis_client.hset(mine, mapping={"o": "w1:chunk-1", "x": soon})
    redis_client.hset(theirs, mapping={"o": "w1:chunk-2", "x": soon})
    renew = redis_client.register_script(RENEW_SCRIPT)
    assert renew(keys=[mine, theirs], args=["w1:chunk-1", 120_000]) == 1
    assert int(redis_client.hget(mine, "x")) > soon + 100_000
    assert int(redis_client.hget(theirs, "x")) == soon
