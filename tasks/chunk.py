"""The bulk chunk task: `voicemail.bulk_chunk(bulk_id, number)`, queued by `submit_bulk`.

Runs in the worker only: it hands the chunk to the worker context's bulk engine.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from redis.exceptions import RedisError

from worker.api.retry import capped_retry_after, requeue_delay
from worker.coordination.bulk_control import park
from worker.coordination.ordering import new_lock_owner
from worker.coordination.waves import wake_bulk
from worker.core import keys
from worker.core.errors import ChunkLost, EngineUnavailable
from worker.engine.halt import owner_instance
from worker.engine.recorder import ChunkReport
from worker.queue import context, notify
from worker.queue.app import CHUNK_TASK, app, send_chunk
from worker.queue.context import WorkerContext

logger = logging.getLogger(__name__)


class _FoundDead(Exception):
    """The chunk's worker instance was marked reaped while the chunk ran."""


@app.task(name=CHUNK_TASK, bind=True, acks_late=True, max_retries=None)
def bulk_chunk(self: Any, bulk_id: str, number: int) -> dict[str, Any]:
    """Apply one chunk of a bulk; re-queues itself while rows fail transiently."""
    ctx = context.current()
    bulk_id, number = str(bulk_id), int(number)
    report = _run(self, ctx, bulk_id, number)
    _send_notifications(ctx, bulk_id)  # this chunk may have settled the bulk
    _start_next_wave(ctx, bulk_id)  # or ended one of its waves
    if report.paused:
        try:
            return _park(self, ctx, bulk_id, number, report.as_dict())
        except RedisError as exc:  # neither parked nor re-sent: run again once Redis is back
            raise self.retry(exc=exc, countdown=1, max_retries=None) from None
    _log(self, bulk_id, number, report)
    if report.lost:
        # Its rows are recorded as failed, by line (`ChunkLost: ...`): say it loudly, and
        # end in FAILURE rather than a SUCCESS that hides them.
        logger.error(
            "bulk %s chunk %d: its rows were gone; %d lines failed", bulk_id, number, report.lost
        )
        raise ChunkLost(f"chunk {number} of bulk {bulk_id} was gone: {report.lost} rows failed")
    if report.transient:
        _requeue(self, ctx, bulk_id, number, report)
    # Flower shows this as the task's result: say when the bulk's cancel cut it short.
    return {"bulk_state": "CANCELLED" if report.cancelled else "RUNNING", **report.as_dict()}


def _lock_waits(task: Any, ctx: WorkerContext) -> int:
    """Re-queues spent waiting for other updates' account locks: not API trouble, so not
    counted against `requeue_max` (a single job's waits are not either)."""
    if not task.request.retries:
        return 0
    return int(ctx.redis.get(keys.lock_waits(str(task.request.id))) or 0)


def _run(task: Any, ctx: WorkerContext, bulk_id: str, number: int) -> ChunkReport:
    """The engine's run of the chunk; trouble outside the rows re-queues the task."""
    settings = ctx.settings
    waits = _lock_waits(task, ctx)
    final = task.request.retries - waits >= settings.requeue_max
    try:
        # One lock owner per delivery: a duplicate of this message is a different owner.
        owner = new_lock_owner(ctx.instance)
        report = ctx.engine.run_chunk(bulk_id, number, final=final, lock_owner=owner)
        if ctx.redis.exists(keys.reaped(owner_instance(owner))):
            raise _FoundDead
        return report
    except _FoundDead:
        # Found dead while it ran: its claims were refused and the rest held back. The
        # reaper gave this delivery back (unless it came after the reap): queue it again,
        # under the worker's new identity; a chunk delivered twice records each row once.
        logger.warning("bulk %s chunk %d: this worker was found dead; re-queued", bulk_id, number)
        raise task.retry(countdown=1, max_retries=None) from None
    except EngineUnavailable as exc:
        limit = settings.requeue_max + 5 + waits
        raise task.retry(exc=exc, countdown=1, max_retries=limit) from None
    except (RedisError, OSError) as exc:
        # Redis gone mid-chunk: rows already recorded stay recorded; the rest go on as soon
        # as Redis is back (a short countdown, outside the budget for API trouble).
        logger.warning("bulk %s chunk %d: Redis trouble: %s", bulk_id, number, exc)
        raise task.retry(exc=exc, countdown=1, max_retries=None) from None
    except Exception as exc:
        logger.warning("bulk %s chunk %d failed: %s: %s", bulk_id, number, type(exc).__name__, exc)
        countdown = requeue_delay(settings, task.request.retries - waits, None)
        limit = settings.requeue_max + waits
        raise task.retry(exc=exc, countdown=countdown, max_retries=limit) from None


def _send_notifications(ctx: WorkerContext, bulk_id: str) -> None:
    try:
        notify.drain(ctx.redis, app)
    except Exception:  # kept in the outbox: the worker's next tick sends it
        logger.warning("bulk %s: could not send its notification yet", bulk_id)


def _start_next_wave(ctx: WorkerContext, bulk_id: str) -> None:
    try:
        wake_bulk(ctx.redis, bulk_id, send_chunk)
    except RedisError:  # still on record: a worker's tick queues them (wake_orphans)
        logger.warning("bulk %s: could not queue its next wave's chunks yet", bulk_id)


def _log(task: Any, bulk_id: str, number: int, report: ChunkReport) -> None:
    logger.info(
        "bulk %s chunk %d: %d ok, %d unchanged, %d failed, %d cancelled, %d to retry, in %.0fms",
        bulk_id,
        number,
        report.succeeded,
        report.unchanged,
        report.failed,
        report.cancelled,
        report.transient,
        report.seconds * 1000,
        extra={
            "job_id": task.request.id,
            "task": CHUNK_TASK,
            "bulk_id": bulk_id,
            "chunk": number,
            "attempt": task.request.retries + 1,
            "outcome": "retry" if report.transient else "ok",
            "latency_ms": round(report.seconds * 1000, 1),
        },
    )


LOCK_RETRY_DELAY = 1.0  # seconds between runs of a chunk whose rows wait only for locks


def _requeue(task: Any, ctx: WorkerContext, bulk_id: str, number: int, report: ChunkReport) -> None:
    """Rows still failing transiently: the chunk runs again after a countdown. Rows that
    only wait for another update's lock look again shortly, spending no budget."""
    settings = ctx.settings
    waits = _lock_waits(task, ctx)
    if report.transient == report.locked:
        _wait_for_locks(task, ctx, bulk_id, number, report.locked)
    hint = report.retry_after
    countdown = (
        capped_retry_after(settings, hint)
        if hint is not None
        else requeue_delay(settings, task.request.retries - waits, None)
    )
    # The chunk's rows outlive the wait: nothing of a bulk expires before it settles.
    logger.info(
        "bulk %s chunk %d: %d rows still failing, re-queued in %.1fs",
        bulk_id,
        number,
        report.transient,
        countdown,
    )
    raise task.retry(countdown=countdown, max_retries=settings.requeue_max + waits)


def _wait_for_locks(
    task: Any, ctx: WorkerContext, bulk_id: str, number: int, rows: int
) -> NoReturn:
    key = keys.lock_waits(str(task.request.id))
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, ctx.settings.result_expires)
        pipe.execute()
    logger.info(
        "bulk %s chunk %d: %d rows wait for other updates of their accounts; again in %.1fs",
        bulk_id,
        number,
        rows,
        LOCK_RETRY_DELAY,
    )
    raise task.retry(countdown=LOCK_RETRY_DELAY, max_retries=None)


def _park(
    task: Any, ctx: WorkerContext, bulk_id: str, number: int, report: dict[str, Any]
) -> dict[str, Any]:
    """The bulk is paused: park the chunk in Redis and end the task, so it holds no pool
    thread, no engine slot and no message while it waits; the resume queues it again
    with the retries it had spent (none spent here)."""
    retries = task.request.retries
    if park(ctx.redis, bulk_id, number, retries):
        logger.info(
            "bulk %s chunk %d: paused, %d rows wait for the resume",
            bulk_id,
            number,
            report["paused"],
        )
        return {"bulk_state": "PAUSED", **report}
    # Resumed (or cancelled) while this run stopped: run it again at once.
    send_chunk(bulk_id, number, retries)
    return {"bulk_state": "RUNNING", **report}
