"""The lost-job sweep's decisions, on fakeredis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from celery import Celery

from simulator import stack
from worker.queue import recovery
from worker.store.credentials import AccountRow, CredentialStore

from .conftest import TEST_SECRET_KEY, worker_env

# What producers of earlier releases stamped; read by nothing any more.
FORGED_HEADER = "voicemail_published_at"


def publish(client: Any, job: str, at: float, queue: str = "celery") -> None:
    headers: dict[str, Any] = {}
    recovery.on_publish(
        client, job, "voicemail.update", (["a", True, "x@y.ru"], {}, {}), queue, headers
    )
    client.zadd(recovery.PENDING_KEY, {job: at})
    client.zadd(recovery.PENDING_AT, {job: at})


def test_sweep_decisions() -> None:
    client = fakeredis.FakeRedis()
    for job in ("done", "held", "lost", "queued", "recent"):
        publish(client, job, at=100.0)
    client.zadd(recovery.PENDING_KEY, {"recent": 195.0})
    client.zadd(recovery.PENDING_AT, {"recent": 195.0})
    client.set("celery-task-meta-done", json.dumps({"status": "SUCCESS"}))
    message = {"headers": {"id": "held"}}
    client.hset("unacked", "tag-1", json.dumps([message, "celery", "celery"]))
    # A worker received a job published at t=150 from "celery": older jobs should be gone.
    publish(client, "marker", at=150.0)
    client.set("celery-task-meta-marker", json.dumps({"status": "SUCCESS"}))
    recovery.on_received(client, "celery", "marker")
    # A job sent by name (not published through this app) moves nothing.
    recovery.on_received(client, "voicemail.bulk", "sent-by-name")
    assert client.zscore(recovery.THROUGH_KEY, "voicemail.bulk") is None
    client.hset(
        recovery.PENDING_MSG,
        "queued",
        json.dumps(
            {
                "task": "voicemail.update",
                "args": [],
                "kwargs": {},
                "queue": "voicemail.bulk",
            }
        ),
    )
    client.lpush("voicemail.bulk", "a message still waiting")  # not empty, not moved past
    sent: list[str] = []
    count = recovery.sweep(client, lambda record, job: sent.append(job), now=200.0)
    assert (count, sent) == (1, ["lost"])
    assert client.zscore(recovery.PENDING_KEY, "done") is None  # finished: cleaned up
    assert client.zscore(recovery.PENDING_KEY, "held") == 200.0  # looked at again later
    assert client.zscore(recovery.PENDING_KEY, "recent") == 195.0  # too young to judge
    # Only one worker sweeps at a time.
    assert recovery.sweep(client, lambda record, job: sent.append(job), now=200.0) == 0


BACKLOG = 40
ENQUEUE = """
import sys
from tasks.producer import enqueue_update
for name in sys.argv[1:]:
    enqueue_update(name, True, name + "@backlog.ru")
"""


@pytest.mark.integration
def test_a_forged_publish_time_never_republishes_a_backlog(tmp_path: Path) -> None:
    """Finding 7: a job sent by name with a far-future `voicemail_published_at` header
    moved its queue's mark past every job waiting behind it, so the sweep took each one
    for lost and published it again every 10 s."""
    own_redis = stack.start_redis(tmp_path)
    sim_service = stack.start_simulator(tmp_path, generate=BACKLOG)
    names = [f"acct-{i:06d}" for i in range(1, BACKLOG + 1)]
    client = redis.Redis.from_url(own_redis.url)
    CredentialStore(client, TEST_SECRET_KEY).put_many(AccountRow(n, f"tok-{n}") for n in names)
    # Two PATCHes a second, one job at a time: a backlog of about 20 s.
    env = worker_env(sim_service.url, REDIS_URL=own_redis.url, VOICEMAIL_RATE_LIMIT="2")
    worker = stack.start_worker(tmp_path, env, name="backlog", concurrency=1)
    foreign = Celery("by-name", broker=own_redis.url, backend=own_redis.url)
    foreign.conf.update(task_serializer="json", accept_content=["json"])
    try:
        # First in the queue, so a worker receives it while the backlog waits behind it.
        forged = {FORGED_HEADER: time.time() + 1_000_000}
        foreign.send_task("voicemail.get", args=[names[0]], headers=forged)
        done = subprocess.run(
            [sys.executable, "-c", ENQUEUE, *names], env=env, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        queued = client.llen("celery")
        deadline = time.monotonic() + 18  # past the first sweeps (a job waits 10 s first)
        while time.monotonic() < deadline:
            assert client.llen("celery") <= queued, "jobs of the backlog were published again"
            time.sleep(0.2)
        assert "publishing it again" not in worker.log()
        assert client.llen("celery") > 0, "the backlog drained before the sweeps looked at it"
    finally:
        foreign.close()
        worker.stop()
        sim_service.stop()
        own_redis.stop()
