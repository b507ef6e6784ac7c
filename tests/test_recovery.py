"""The lost-job sweep's decisions, on fakeredis."""

from __future__ import annotations

import json
from typing import Any

import fakeredis

from worker.queue import recovery


def publish(client: Any, job: str, at: float, queue: str = "celery") -> None:
    headers: dict[str, Any] = {}
    recovery.on_publish(
        client, job, "voicemail.update", (["a", True, "x@y.ru"], {}, {}), queue, headers
    )
    client.zadd(recovery.PENDING_KEY, {job: at})
    record = json.loads(client.hget(recovery.PENDING_MSG, job))
    client.hset(recovery.PENDING_MSG, job, json.dumps({**record, "at": at}))


def test_sweep_decisions() -> None:
    client = fakeredis.FakeRedis()
    for job in ("done", "held", "lost", "queued", "recent"):
        publish(client, job, at=100.0)
    client.zadd(recovery.PENDING_KEY, {"recent": 195.0})
    client.hset(
        recovery.PENDING_MSG,
        "recent",
        json.dumps(
            {"task": "voicemail.update", "args": [], "kwargs": {}, "queue": "celery", "at": 195.0}
        ),
    )
    client.set("celery-task-meta-done", json.dumps({"status": "SUCCESS"}))
    message = {"headers": {"id": "held"}}
    client.hset("unacked", "tag-1", json.dumps([message, "celery", "celery"]))
    # A worker received a job published at t=150 from "celery": older jobs should be gone.
    recovery.on_received(client, "celery", 150.0)
    client.hset(
        recovery.PENDING_MSG,
        "queued",
        json.dumps(
            {
                "task": "voicemail.update",
                "args": [],
                "kwargs": {},
                "queue": "voicemail.bulk",
                "at": 100.0,
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
