"""The Celery application: `celery -A worker worker` finds it as `worker.app`."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from celery import Celery, signals
from kombu import Queue

from . import _constants as C
from . import compat, recovery, stats
from .backend import backend_url
from .connections import is_sentinel, redis_client
from .logs import install_redaction, use_json
from .runtime import close_runtime, runtime
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        "result_backend": backend_url(settings.result_backend),
        # JSON only: a pickle message is refused, never deserialised.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A job is acknowledged after it ran; a worker lost mid-job puts it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        # Bulk chunks have a queue of their own; a worker consumes both by default, and
        # kombu takes from them in turn, so a big bulk does not starve single jobs.
        "task_queues": (
            Queue("celery", routing_key="celery"),
            Queue("voicemail.bulk", routing_key="voicemail.bulk"),
        ),
        "task_routes": {"voicemail.bulk_chunk": {"queue": "voicemail.bulk"}},
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "result_expires": settings.result_expires,
        "result_extended": True,
        # A short lease, renewed by worker.lease while a worker holds the message,
        # and a restore sweep every 5 s: a killed worker's jobs come back within
        # about a minute instead of kombu's default hour.
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4,
        "redis_socket_connect_timeout": 5,
        "redis_socket_timeout": 10,
        "redis_backend_health_check_interval": 30,
        # A producer facing a dead Redis gets an error within seconds, not a hang.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        # On a lost broker connection, running jobs finish (their ack is lost, the
        # lease lapses and the message comes back; applying it again is harmless).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
    }


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    compat.install()
    celery = Celery("voicemail", include=["tasks.voicemail", "tasks.bulk"])
    config = celery_config(settings)
    # Redis Sentinel: kombu and Celery find the master by name through transport options.
    if is_sentinel(settings.broker_url):
        config["broker_transport_options"]["master_name"] = settings.sentinel_master
    if is_sentinel(settings.result_backend):
        config["result_backend_transport_options"] = {"master_name": settings.sentinel_master}
    celery.conf.update(config)
    return celery


app = create_app()


def job_key(job_id: str) -> str:
    return C.JOB_KEY_PREFIX + job_id


@signals.before_task_publish.connect
def _remember_job(
    sender: str | None = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    routing_key: str | None = None,
    **_: Any,
) -> None:
    """Record that a job id was issued (so a poller can tell "queued" from "never heard
    of") and track it until it finishes (worker.recovery)."""
    if not sender or not sender.startswith("voicemail.") or not headers:
        return
    client = store_redis()
    job_id = str(headers["id"])
    recovery.on_publish(client, job_id, sender, body, routing_key or "celery", headers)
    if headers.get("retries"):
        return
    settings = get_settings()
    record = {"task": sender, "argsrepr": headers.get("argsrepr"), "at": time.time()}
    client.set(job_key(job_id), json.dumps(record), ex=settings.result_expires)


@signals.task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    published_at = (getattr(request, "_request_dict", None) or {}).get(recovery.HEADER)
    if published_at is None:
        return
    queue = (request.delivery_info or {}).get("routing_key") or "celery"
    try:
        recovery.on_received(runtime().redis, queue, float(published_at))
    except Exception:  # bookkeeping must never cost a job
        logger.warning("could not record receipt of job %s", request.id, exc_info=True)


@signals.task_postrun.connect
def _finished(task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    rt = runtime()
    if rt.client.stats is not None:
        try:
            stats.flush(rt.redis, rt.client.stats)
        except Exception:
            logger.debug("could not flush request statistics", exc_info=True)
    if task_id and state in ("SUCCESS", "FAILURE"):
        try:
            recovery.on_finished(runtime().redis, task_id)
        except Exception:
            logger.warning("could not clear job %s from the pending list", task_id, exc_info=True)


_store_client: redis.Redis | None = None


def store_redis() -> redis.Redis:
    """This process's client for REDIS_URL, shared by the publish hook and the producer API."""
    global _store_client
    if _store_client is None:
        _store_client = redis_client(get_settings().redis_url)
    return _store_client


@signals.task_failure.connect
def _dead_letter(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """A job that failed for good is listed, never dropped silently."""
    name = getattr(sender, "name", "") or ""
    if not name.startswith("voicemail.") or task_id is None or exception is None:
        return
    from . import deadletter

    retries = getattr(getattr(sender, "request", None), "retries", 0) or 0
    letter = deadletter.letter_from(task_id, name, args, kwargs, exception, retries)
    try:
        deadletter.record(runtime().redis, letter)
    except Exception:  # the failure itself is stored by Celery; log that the list missed it
        logger.exception("could not record dead letter for job %s", task_id)


@signals.task_success.connect
def _revived(sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", "") or ""
    request = getattr(sender, "request", None)
    if name.startswith("voicemail.") and request is not None and request.id:
        from . import deadletter

        deadletter.forget(runtime().redis, str(request.id))


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    install_redaction(logger)
    install_redaction()
    if get_settings().log_json:
        use_json(logger)
        use_json()


_lease: Any = None


@signals.worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    global _lease
    from .lease import LeaseKeeper

    settings = get_settings()
    _lease = LeaseKeeper(settings)
    _lease.start()
    runtime().store.mark_env_account()
    # With the thread (or solo) pool, chunks run in this process: start the bulk engine
    # now, not on the first chunk. A prefork pool's children run chunks inline instead.
    pool = getattr(sender, "pool", None)
    if pool is not None and "prefork" not in type(pool).__module__:
        from .engine import engine

        engine()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close(**_: Any) -> None:
    from .engine import reset_engine

    if _lease is not None:
        _lease.stop()
    reset_engine()
    close_runtime()
