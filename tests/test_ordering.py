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
    from worker.coordination.ordering import Ordering
    from worker.core.keys import account_state

    mine, theirs = account_state("renew-mine"), account_state("renew-theirs")
    soon = int(time.time() * 1000) + 1000
    redis_client.hset(mine, mapping={"o": "w1:chunk-1", "x": soon})
    redis_client.hset(theirs, mapping={"o": "w1:chunk-2", "x": soon})
    assert Ordering(redis_client).renew("w1:chunk-1", ["renew-mine", "renew-theirs"]) == 1
    assert int(redis_client.hget(mine, "x")) > soon + 100_000
    assert int(redis_client.hget(theirs, "x")) == soon


DAY = 86_400


def test_ordering_state_is_one_small_field_that_expires(redis_client: Any) -> None:
    from worker.coordination import ordering as O
    from worker.core.keys import APPLIED_PREFIX, account_state

    prefix = f"c{time.time_ns() % 10**6:06d}"  # names of a usual length: c123456-00001
    accounts = [f"{prefix}-{i:05d}" for i in range(5000)]
    ordering = O.Ordering(redis_client, ordering_ttl=7 * DAY)
    keys_before = redis_client.dbsize()
    used_before = redis_client.info("memory")["used_memory"]
    for _round in range(2):  # two updates of every account, each claimed and applied
        for start in range(0, len(accounts), 500):
            batch = accounts[start : start + 500]
            first = ordering.next_seq(len(batch))
            items = [(a, first + i) for i, a in enumerate(batch)]
            assert ordering.claim("w1:f1", items) == [O.Verdict.CLAIMED] * len(batch)
            ordering.release("w1:f1", [O.Release(a, seq, O.Settled.APPLIED) for a, seq in items])
    grown = redis_client.info("memory")["used_memory"] - used_before
    # No key per account: its lock hash is gone, its number is a field of today's hash.
    assert redis_client.dbsize() - keys_before <= 1
    assert not redis_client.exists(account_state(accounts[0]))
    today = f"{APPLIED_PREFIX}{int(redis_client.time()[0]) // DAY}"
    assert int(redis_client.hget(today, accounts[-1])) == items[-1][1]
    assert 8 * DAY - 5 <= redis_client.ttl(today) <= 8 * DAY
    assert grown / len(accounts) <= 110, f"{grown / len(accounts):.0f} bytes per account"
    redis_client.hdel(today, *accounts)


def test_an_update_older_than_the_ordering_ttl_is_refused(redis_client: Any) -> None:
    from worker.coordination import ordering as O
    from worker.core.keys import account_state

    account = f"late-{time.time_ns()}"
    eight_days_ago = int((time.time() - 8 * DAY) * 1_000_000)
    week = O.Ordering(redis_client, ordering_ttl=7 * DAY)
    # Its account's record is gone (expired, say): the update still does not apply.
    assert week.claim("w1:f1", [(account, eight_days_ago)]) == [O.Verdict.EXPIRED]
    assert not redis_client.exists(account_state(account))
    nine_days = O.Ordering(redis_client, ordering_ttl=9 * DAY)
    assert nine_days.claim("w1:f1", [(account, eight_days_ago)]) == [O.Verdict.CLAIMED]


@pytest.mark.usefixtures("worker")
def test_a_late_update_is_dead_lettered_as_expired_and_retried_afresh(
    make_account: MakeAccount, sim: stack.SimulatorControl, foreign_app: Celery
) -> None:
    from tasks.producer import dead_letters, redrive

    account = make_account()
    eight_days_ago = int((time.time() - 8 * DAY) * 1_000_000)
    late = foreign_app.send_task(
        "voicemail.update",
        args=[account.name, True, "late@acme.ru"],
        kwargs={"seq": eight_days_ago},
    )
    late.get(timeout=20, propagate=False)
    assert late.state == "FAILURE" and type(late.result).__name__ == "Expired"
    assert sim.account(account.name)["patches"] == 0
    (letter,) = [d for d in dead_letters() if d.id == late.id]
    assert letter.error["reason"].startswith("Expired: ")
    again = redrive(late.id)
    assert wait(again, timeout=20).ok
    assert sim.account(account.name)["email"] == "late@acme.ru"
