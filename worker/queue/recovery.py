"""Jobs lost between the broker and a worker are found and published again.

kombu's Redis transport takes a message off its queue (BRPOP) and only then
records it as unacknowledged; a worker killed between the two loses the message
for good: nothing is queued, nothing is unacked. The soak test (SIGKILL every
few seconds) lost about one job in 25,000 that way. So every job this app
publishes is tracked until it finishes:

    voicemail:pending           zset  job id -> when to look at it (published, looked at)
    voicemail:pending:at        zset  job id -> when it was (last) published
    voicemail:pending:msg       hash  job id -> {task, args, kwargs, queue}
    voicemail:received_through  zset  queue -> the latest publish time a worker received

Every time is Redis's clock (`TIME`, in the scripts and the sweep), never a host's: a
producer's clock ahead of the sweeper's would make jobs in a backlog look lost. And a
receipt moves `received_through` only to the publish time this app recorded for that
job id: a job sent by name, whatever its headers say, moves nothing (a forged
`voicemail_published_at` far in the future once made every job in a backlog look lost
and published again every 10 s).

Queues are FIFO, so once a worker has received a job published after ours, ours
should have been received too; and a job whose queue is empty is not waiting in
it. A sweep (one worker at a time, every few seconds) takes jobs pending longer
than `SWEEP_AFTER`, and publishes again, under the same id, each one that has no
result, is not held unacknowledged, and whose queue is empty or has moved past
it. A job published twice is applied once (worker.coordination.ordering), so a wrong guess
costs a duplicate message, never a duplicate change.
Jobs other services send by name are not tracked (they never pass through here).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..core import keys, lua
from ..core.connections import text

logger = logging.getLogger(__name__)

PENDING_KEY = keys.PENDING
PENDING_MSG = keys.PENDING_MSG
THROUGH_KEY = keys.RECEIVED_THROUGH
SWEEP_LOCK = keys.SWEEP_LOCK
PENDING_AT = keys.PENDING_AT
_PUBLISH = lua.load(__package__, "publish.lua")
_RECEIVED = lua.load(__package__, "received.lua")
SWEEP_AFTER = 10.0  # seconds a job may sit before a sweep looks at it
MARGIN = 1.0  # seconds of publish-order slack between producers


def on_publish(
    client: Any, job_id: str, task: str, body: Any, queue: str, headers: dict[str, Any]
) -> None:
    """Track the job; `client` may be a pipeline, for the caller to execute with its own."""
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ([], {})
    )
    record = {"task": task, "args": args, "kwargs": kwargs, "queue": queue}
    script = client.register_script(_PUBLISH)
    script(
        keys=[PENDING_KEY, PENDING_AT, PENDING_MSG], args=[job_id, json.dumps(record, default=repr)]
    )


def on_received(client: Any, queue: str, job_id: str) -> None:
    """`client` may be a pipeline."""
    script = client.register_script(_RECEIVED)
    script(keys=[THROUGH_KEY, PENDING_AT], args=[queue, job_id])


def on_finished(client: Any, job_id: str) -> None:
    """`client` may be a pipeline."""
    client.zrem(PENDING_KEY, job_id)
    client.zrem(PENDING_AT, job_id)
    client.hdel(PENDING_MSG, job_id)


def redis_now(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000


def _unacked_ids(client: Any) -> set[str]:
    ids: set[str] = set()
    for raw in client.hvals("unacked"):
        try:
            message = json.loads(raw)[0]
            ids.add(str(message["headers"]["id"]))
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return ids


def _received_through(client: Any, now: float) -> dict[str, float]:
    """Each queue's mark; one ahead of Redis's clock was forged (a header trusted before
    Redis's clock was used): it is dropped and starts again from the next receipt."""
    marks = {text(k): float(v) for k, v in client.zrange(THROUGH_KEY, 0, -1, withscores=True)}
    forged = [queue for queue, at in marks.items() if at > now + MARGIN]
    if forged:
        logger.warning("dropping received-through marks ahead of Redis's clock: %s", forged)
        client.zrem(THROUGH_KEY, *forged)
    return {queue: at for queue, at in marks.items() if queue not in forged}


def sweep(
    client: Any,
    republish: Any,
    *,
    broker: Any = None,
    results: Any = None,
    now: float | None = None,
) -> int:
    """Publish lost jobs again; returns how many. `republish(record, job_id)` sends one.

    `client` holds our keys (REDIS_URL); `broker` the unacked hash and `results` the
    job results, when those live elsewhere (CELERY_BROKER_URL, CELERY_RESULT_BACKEND).
    """
    broker = broker or client
    results = results or client
    now = redis_now(client) if now is None else now
    if not client.set(SWEEP_LOCK, "1", nx=True, ex=5):
        return 0  # another worker is sweeping
    candidates = [
        text(i) for i in client.zrangebyscore(PENDING_KEY, 0, now - SWEEP_AFTER, start=0, num=500)
    ]
    if not candidates:
        return 0
    through = _received_through(client, now)
    held = _unacked_ids(broker)
    empty: dict[str, bool] = {}
    metas = results.mget([f"celery-task-meta-{job}" for job in candidates])
    records = client.hmget(PENDING_MSG, candidates)
    published = client.zmscore(PENDING_AT, candidates)
    republished = 0
    for job, meta, raw, at_ in zip(candidates, metas, records, published, strict=True):
        state = json.loads(meta).get("status") if meta else None
        if state in ("SUCCESS", "FAILURE", "REVOKED") or raw is None:
            on_finished(client, job)  # finished, its cleanup was missed
            continue
        record = json.loads(raw)
        queue = record["queue"]
        # A record from before publish times were kept apart has its own "at".
        at = float(at_) if at_ is not None else float(record.get("at", now))
        if queue not in empty:
            empty[queue] = broker.llen(queue) == 0
        lost = (
            state is None
            and job not in held
            and (empty[queue] or through.get(queue, 0.0) > at + MARGIN)
        )
        if lost:
            logger.warning(
                "job %s (%s) was lost before a worker got it: publishing it again",
                job,
                record["task"],
            )
            republish(record, job)
            republished += 1
        else:
            client.zadd(PENDING_KEY, {job: now}, xx=True)  # look again later
    return republished
