"""What runs only in a worker process: signal handlers, the lease keeper, the kombu
work-around and the worker context's life.

`install()` is called once, when `celery -A worker worker` (or Flower) loads the app
through `worker.app`; a producer importing `tasks` never runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import signals
from celery.concurrency import get_implementation

from ..core.logs import install_redaction, use_json
from ..core.settings import get_settings
from . import backend, context, deadletter, kombu_patches, liveness, notify, recovery
from .app import app, connections
from .lease import LeaseKeeper

logger = logging.getLogger(__name__)

_lease: LeaseKeeper | None = None
_installed = False


def install() -> None:
    """Connect the worker-side handlers (idempotent)."""
    global _installed
    if _installed:
        return
    kombu_patches.install_settle_patch()
    backend.dead_letter_store = lambda: context.current().redis
    for signal, handler in (
        (signals.worker_init, _on_init),
        (signals.worker_process_init, _on_process_init),
        (signals.worker_ready, _on_ready),
        (signals.worker_process_shutdown, _on_shutdown),
        (signals.worker_shutdown, _on_shutdown),
        (signals.task_received, _received),
        (signals.task_postrun, _finished),
        (signals.after_setup_logger, _redact_logs),
        (signals.after_setup_task_logger, _redact_logs),
    ):
        signal.connect(handler, weak=False)
    _installed = True


def _is_prefork(pool_cls: Any) -> bool:
    return "prefork" in getattr(get_implementation(pool_cls), "__module__", "")


def _on_init(sender: Any = None, **_: Any) -> None:
    # A prefork parent runs no job: each child builds its own context instead.
    if not _is_prefork(getattr(sender, "pool_cls", None)):
        context.start(get_settings())


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
    """Once a second, beside the lease: statistics out, settled bulks' notifications sent."""
    ctx = context.started()
    if ctx is not None:  # a prefork parent has none: its children flush their own
        ctx.flush_stats(force=True)
    try:
        notify.drain(connections().redis, app)
    except Exception:  # the outbox keeps them: the next tick tries again
        logger.warning("could not send bulk notifications", exc_info=True)


def _on_ready(sender: Any = None, **_: Any) -> None:
    global _lease
    settings = get_settings()
    _lease = LeaseKeeper(
        settings,
        instance=context.instance(),
        reborn=context.new_instance,
        node=str(getattr(sender, "hostname", "") or ""),
        republish=republish,
        restore=restore,
        tick=_tick,
    )
    _lease.beat()  # beat before the first job, not a second after
    _lease.start()
    connections().store.mark_env_account()
    ctx = context.started()
    if ctx is not None:
        # Chunks run in this process (thread or solo pool): start the engine's processes
        # now, not on the first chunk. A prefork child runs chunks inline instead.
        ctx.engine.start()


def _on_shutdown(**_: Any) -> None:
    if _lease is not None:
        _lease.stop()
    context.stop()


def _received(request: Any = None, **_: Any) -> None:
    # Runs in the main process (the consumer), whatever the pool.
    client = connections().redis
    published_at = (getattr(request, "_request_dict", None) or {}).get(recovery.HEADER)
    tag = getattr(getattr(request, "message", None), "delivery_tag", None)
    try:
        with client.pipeline(transaction=False) as pipe:  # one round trip per job
            if tag:
                liveness.record_received(pipe, context.instance(), str(tag))
            if published_at is not None:
                queue = (request.delivery_info or {}).get("routing_key") or "celery"
                recovery.on_received(pipe, queue, float(published_at))
            pipe.execute()
    except Exception:  # bookkeeping must never cost a job
        logger.warning("could not record receipt of job %s", request.id, exc_info=True)


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
