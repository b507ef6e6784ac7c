"""An idempotency key never answers with work that was not queued (issue 18, finding 5):
a producer killed between storing the key and queueing the work, or a Redis error that
also stopped its clean-up, leaves a claim that lapses, and a retry queues the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from simulator import stack
from tasks import enqueue_update, wait
from tasks.bulk import bulk_status, submit_bulk
from tasks.idempotency import IdempotencyKey
from worker.coordination.bulk_status import BulkStatus

from .conftest import SimAccount

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def test_a_claim_settles_once_and_lapses_when_its_caller_dies(
    redis_client: redis.Redis,
) -> None:
    key = f"unit-{uuid.uuid4().hex}"
    first = IdempotencyKey(redis_client, key, lease=0.3, ttl=60)
    assert first.claim("job-1").state == "new"
    assert first.claim("job-2").state == "busy"  # the first caller is still queueing
    other = IdempotencyKey(redis_client, key, lease=0.3, ttl=60)
    lapsed = other.wait_settled("job-2", timeout=5)
    assert (lapsed.state, lapsed.id) == ("takeover", "job-1")
    other.settle("job-2")
    first.settle("job-1")  # too late: no longer its claim, changes nothing
    assert other.claim("job-3").state == "done"
    assert other.claim("job-3").id == "job-2"


def test_a_retry_queues_the_job_a_killed_producer_never_did(
    worker: stack.Service, make_account: Callable[..., SimAccount], redis_client: redis.Redis
) -> None:
    account = make_account()
    key = f"killed-{uuid.uuid4().hex}"
    # What a producer killed right after storing the key leaves behind (lease: 0.2 s).
    assert IdempotencyKey(redis_client, key, lease=0.2, ttl=60).claim("never-queued").state == "new"
    job = enqueue_update(account.name, True, "retried@acme.ru", idempotency_key=key)
    assert job != "never-queued"
    assert wait(job, timeout=30).state == "SUCCESS"
    assert enqueue_update(account.name, True, "retried@acme.ru", idempotency_key=key) == job


PRODUCER = textwrap.dedent(
    """
    import sys, time
    from tasks.bulk import submit_bulk

    def rows():
        for name in sys.argv[2:]:
            yield {"account": name, "send": True, "email": "stream@acme.ru"}
        print("streamed", flush=True)
        time.sleep(600)  # a producer stuck mid-stream, then killed

    submit_bulk(rows(), idempotency_key=sys.argv[1])
    """
)


def test_a_retry_resubmits_a_bulk_whose_producer_died_mid_stream(
    worker: stack.Service, make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    names = [make_account().name for _ in range(5)]
    key = f"bulk-{uuid.uuid4().hex}"
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, key, *names],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert producer.stdout is not None
    assert producer.stdout.readline().strip() == "streamed"
    producer.send_signal(signal.SIGKILL)
    producer.wait(timeout=10)
    producer.stdout.close()
    rows = [{"account": n, "send": True, "email": "stream@acme.ru"} for n in names]
    bulk_id = poll(lambda: _resubmitted(rows, key), 30)
    status = poll(lambda: _done(bulk_id), 60)
    assert status.total == 5 and status.succeeded == 5
    assert submit_bulk(rows, idempotency_key=key) == bulk_id
    for name in names:
        assert sim.account(name)["email"] == "stream@acme.ru"


T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while (found := check()) is None:
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)
    return found


def _done(bulk_id: str) -> BulkStatus | None:
    status = bulk_status(bulk_id)
    return status if status.state == "DONE" else None


def _resubmitted(rows: list[dict[str, object]], key: str) -> str | None:
    """The id a retry gets: the dead bulk's (SUBMITTING) while its claim holds, then a new one."""
    bulk_id = submit_bulk(rows, idempotency_key=key)
    return bulk_id if bulk_status(bulk_id).state != "SUBMITTING" else None
