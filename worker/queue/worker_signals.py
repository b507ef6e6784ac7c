"""What runs only in a worker process: signal handlers, the lease keeper, the kombu
work-around and the worker context's life.

`install()` is called when `celery -A worker worker` (or Flower) loads the app through
`worker.app`; a producer importing `tasks` never runs it. Every handler here works
through the process's `WorkerContext` (`context.current()`), built at `worker_init`
before anything else runs; only a process that loaded the app without running a worker
(Flower, `celery -A worker call`) publishes with the producer's connections.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import signals
from celery.concurrency import get_implementation

from ..coordination import bulk_control, schedule
from ..core.logs import install_redaction, use_json
from ..core.redis_server import check_server
from ..core.settings import get_settings
from . import context, deadletter, internals, kombu_patches, liveness, notify, recovery
from .app import BULK_QUEUE, TIMED_REVERT_TASK, app, producer_connections, remember_job, send_chunk
from .lease import LeaseKeeper
from .readback_reader import ReadBackReader

logger = logging.getLogger(__name__)


def install() -> None:
    """Connect the worker-side handlers (idempotent: Celery connects a handler once)."""
    internals.require()  # every kombu and Celery internal used, checked before any is
    kombu_patches.install_settle_patch()
    # kombu's per-command redis.Redis costs as much as the round trip; a worker's only.
    kombu_patches.reuse_clients()
    for signal, handler in (
        (signals.worker_init, _on_init),
        (signals.worker_process_init, _on_process_init),
        (signals.worker_ready, _on_ready),
        (signals.worker_process_shutdown, _on_shutdown),
        (signals.worker_shutdown, _on_shutdown),
        (signals.before_task_publish, _published),
        (signals.task_received, _received),
        (signals.task_postrun, _finished),
        (signals.after_setup_logger, _redact_logs),
        (signals.after_setup_task_logger, _redact_logs),
    ):
        signal.connect(handler, weak=False)


def _is_prefork(pool_cls: Any) -> bool:
    return "prefork" in getattr(get_implementation(pool_cls), "__module__", "")


def _on_init(sender: Any = None, **_: Any) -> None:
    # A prefork parent runs no job (each child builds a context of its own for them), but
    # receives, publishes and keeps the lease with its own.
    runs_jobs = not _is_prefork(getattr(sender, "pool_cls", None))
    ctx = context.start(get_settings(), runs_jobs=runs_jobs)
    refuse_unfit_redis(ctx.redis, ctx.settings.allow_eviction)
    if runs_jobs:
        # The engine's processes import while Celery connects and mingles (a second or
        # more, and more on a busy host), not after: a worker restarted after a kill
        # resumes its bulks that much sooner. From the main thread, which they die with;
        # `_on_ready` waits for them.
        ctx.engine.launch()


def refuse_unfit_redis(client: Any, allow_eviction: bool) -> None:
    """Stop the worker (a non-zero exit) on a Redis that may evict the fences."""
    try:
        fitness = check_server(client)
    except Exception as exc:  # Redis away at start: the worker waits for it as ever
        logger.warning("could not check Redis's eviction policy and persistence: %s", exc)
        return
    for warning in fitness.warnings:
        logger.warning(warning)
    if fitness.problem and allow_eviction:
        logger.warning("%s; VOICEMAIL_ALLOW_EVICTION=1: running anyway", fitness.problem)
    elif fitness.problem:
        logger.critical(fitness.problem)
        # SystemExit, not an Exception: Celery's signal dispatch logs and swallows those.
        raise SystemExit(f"voicemail: {fitness.problem}")


def _on_process_init(**_: Any) -> None:
    context.start(get_settings(), fresh=True)


def restore(tags: Iterable[str]) -> None:
    """Put held messages back at the head of their queues, as kombu itself restores them."""
    with app.connection_for_write() as conn:
        qos = conn.default_channel.qos  # type: ignore[attr-defined]  # kombu virtual channel
        for tag in tags:
            qos.restore_by_tag(tag)


def republish(record: dict[str, Any], job_id: str) -> None:
    app.send_task(
        record["task"],
        args=record["args"],
        kwargs=record["kwargs"],
        task_id=job_id,
        queue=record["queue"],
    )


def _tick() -> None:
    """Once a second, beside the lease: statistics out, settled bulks' notifications sent,
    resumed bulks' chunks queued when their resumer died, timed work that is due done."""
    ctx = context.started()
    if ctx is None:  # the worker is shutting down
        return
    if ctx.runs_jobs:  # a prefork parent's children flush their own
        ctx.flush_stats(force=True)
    try:
        notify.drain(ctx.redis, app)
    except Exception:  # the outbox keeps them: the next tick tries again
        logger.warning("could not send bulk notifications", exc_info=True)
    try:  # chunks a resumer (or canceller) died before queueing: usually one SMEMBERS
        bulk_control.wake_orphans(ctx.redis, send_chunk)
    except Exception:  # still on record: the next tick tries again
        logger.warning("could not queue the chunks of a resumed bulk", exc_info=True)
    try:  # bulks due to start (--at), reverts due (--revert-after): usually one EVALSHA
        schedule.run_due(ctx.redis, send_chunk, _send_timed_revert)
    except Exception:  # the schedule keeps them: the next tick tries again
        logger.warning("could not run the timed work that is due", exc_info=True)


def _send_timed_revert(bulk_id: str) -> None:
    # Bulk work, on the bulk queue: a worker that takes only bulks takes it too.
    what = f"timed revert of bulk {bulk_id}"
    app.send_task(TIMED_REVERT_TASK, args=[bulk_id], queue=BULK_QUEUE, argsrepr=what)


def _on_ready(sender: Any = None, **_: Any) -> None:
    ctx = context.current()
    ctx.lease = lease = LeaseKeeper(
        ctx.settings,
        instance=context.instance(),
        reborn=context.new_instance,
        node=str(getattr(sender, "hostname", "") or ""),
        republish=republish,
        restore=restore,
        tick=_tick,
    )
    lease.beat()  # the first tick now; `start` beats at once, before the first job
    lease.start()
    ctx.reader = reader = ReadBackReader(ctx)
    reader.start()
    ctx.store.mark_env_account()
    if ctx.runs_jobs:
        # Chunks run in this process (thread or solo pool): the engine's processes, launched
        # at init, are up before the first job. A prefork child runs chunks inline instead.
        ctx.engine.start()


def _on_shutdown(**_: Any) -> None:
    context.stop()  # the lease thread first, if this process keeps it


def _published(**kwargs: Any) -> None:
    ctx = context.started()
    # None only where the app was loaded without a worker (Flower, `celery call`). A
    # producer's own publishes (`app.publish`) are recorded already: recording again is
    # harmless (the same keys, the same values).
    client = ctx.redis if ctx is not None else producer_connections().redis
    remember_job(client, **kwargs)


def _received(request: Any = None, **_: Any) -> None:
    # Runs in the main process (the consumer), whatever the pool.
    tag = getattr(getattr(request, "message", None), "delivery_tag", None)
    job_id = getattr(request, "id", None)
    try:
        with context.current().redis.pipeline(transaction=False) as pipe:  # one round trip
            if tag:
                liveness.record_received(pipe, context.instance(), str(tag))
            if job_id:
                # Moves the queue's mark to the publish time *we* recorded for this job
                # (Redis's clock); no header a sender sets is read.
                queue = (request.delivery_info or {}).get("routing_key") or "celery"
                recovery.on_received(pipe, queue, str(job_id))
            pipe.execute()
    except Exception:  # bookkeeping must never cost a job
        logger.warning("could not record receipt of job %s", job_id, exc_info=True)


def _finished(task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    ctx = context.started()
    if ctx is None:
        return
    ctx.flush_stats()
    if task_id and state in ("SUCCESS", "FAILURE"):
        try:
            # One round trip per finished job: it is on every job's path.
            with ctx.redis.pipeline(transaction=False) as pipe:
                recovery.on_finished(pipe, task_id)
                if state == "SUCCESS":  # a dead letter's id that succeeds after all
                    deadletter.forget_in(pipe, task_id)
                pipe.execute()
        except Exception:
            logger.warning("could not clear job %s from the pending list", task_id, exc_info=True)


def _redact_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    # httpx logs every request at INFO; each job already logs one line with its outcome.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction(logger)
    install_redaction()
    if get_settings().log_json:
        use_json(logger)
        use_json()
