"""The Celery application and what publishing needs: this is all a producer loads.

Importing this module builds nothing and changes nothing in the host process: no app is
made the current one (`set_as_current=False`), no signal handler is connected, kombu is
not patched. `app`, the default app configured from the environment, is built on first
use (`default_app`). A producer publishes with `publish`, which records the job id so
`poll` can tell a queued job from one never heard of, and tracks the job until it
finishes (`recovery`), then sends it. What only a worker process needs (signal handlers,
leases, the kombu patches, the worker context; a worker records what it publishes
through `before_task_publish`) is in `worker.queue.worker_signals`, installed by
`celery -A worker worker`, never by an import of this module.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery
from kombu import Queue

from ..core import keys
from ..core.connections import is_sentinel, redis_client
from ..core.settings import Settings, get_settings
from ..store.credentials import CredentialStore
from . import recovery
from .backend import backend_url

# Where the task definitions live; a worker imports them, a producer sends by name.
TASK_MODULES = ("tasks.voicemail", "tasks.chunk", "tasks.timed")
BULK_QUEUE = "voicemail.bulk"
CHUNK_TASK = "voicemail.bulk_chunk"
TIMED_REVERT_TASK = "voicemail.timed_revert"  # sent by a worker's tick (coordination.schedule)


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
            Queue(BULK_QUEUE, routing_key=BULK_QUEUE),
        ),
        "task_routes": {CHUNK_TASK: {"queue": BULK_QUEUE}},
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "result_expires": settings.result_expires,
        "result_extended": True,
        # A short lease, renewed by worker.queue.lease while a worker holds the message,
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
    """An app of ours, never made the process's current one (a host service keeps its own);
    the worker makes it current itself when it starts."""
    settings = settings or get_settings()
    celery = Celery("voicemail", include=TASK_MODULES, set_as_current=False)
    config = celery_config(settings)
    # Redis Sentinel: kombu and Celery find the master by name through transport options.
    if is_sentinel(settings.broker_url):
        config["broker_transport_options"]["master_name"] = settings.sentinel_master
    if is_sentinel(settings.result_backend):
        config["result_backend_transport_options"] = {"master_name": settings.sentinel_master}
    celery.conf.update(config)
    return celery


if TYPE_CHECKING:
    app: Celery


@functools.cache
def default_app() -> Celery:
    """The app configured from the environment, built on first use."""
    return create_app()


def __getattr__(name: str) -> Any:
    if name == "app":  # PEP 562: `from worker.queue.app import app` builds it then
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ProducerConnections:
    """A producer's connections, for publishing and for the producer API, opened on first
    use. A worker process never builds one: it has its context (`worker.queue.context`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @functools.cached_property
    def redis(self) -> redis.Redis:
        """The client for REDIS_URL (job records, idempotency keys, the credential store)."""
        return redis_client(self.settings.redis_url)

    @functools.cached_property
    def store(self) -> CredentialStore:
        return CredentialStore.from_settings(self.settings, self.redis)


@functools.cache
def producer_connections() -> ProducerConnections:
    """This producer process's holder, made on first use. redis-py's pool reconnects after
    a fork by itself, so a forked producer keeps using it."""
    return ProducerConnections(get_settings())


def send_chunk(
    bulk_id: str,
    number: int,
    retries: int = 0,
    what: str = "",
    *,
    celery: Celery | None = None,
    client: redis.Redis | None = None,
) -> None:
    """Queue chunk `number` of a bulk (again, after a pause, with the `retries` it had spent).
    With `client`, as a producer: recorded there first (`publish`); without, a worker's
    publish, recorded by its `before_task_publish` handler."""
    options: dict[str, Any] = {
        "queue": BULK_QUEUE,
        "retries": retries,
        "argsrepr": f"{what or f'bulk {bulk_id}'} (chunk {number})",
    }
    celery = celery or default_app()
    if client is None:
        celery.send_task(CHUNK_TASK, args=[bulk_id, number], **options)
    else:
        publish(celery, client, CHUNK_TASK, [bulk_id, number], **options)


def publish(
    celery: Celery,
    client: redis.Redis,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any] | None = None,
    *,
    task_id: str | None = None,
    queue: str = "celery",
    retries: int = 0,
    argsrepr: str | None = None,
) -> str:
    """A producer's publish: the job recorded in `client` (`remember_job`), then sent.
    Nothing global is involved, so a host's own Celery app and signals are untouched."""
    job_id = task_id or str(uuid.uuid4())
    kwargs = kwargs or {}
    headers: dict[str, Any] = {"id": job_id, "retries": retries, "argsrepr": argsrepr}
    remember_job(client, task, headers, [args, kwargs, {}], queue)
    celery.send_task(
        task,
        args=args,
        kwargs=kwargs,
        task_id=job_id,
        queue=queue,
        retries=retries,
        argsrepr=argsrepr,
    )
    return job_id


def job_key(job_id: str) -> str:
    return keys.job(job_id)


def remember_job(
    client: redis.Redis,
    sender: str | None = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    routing_key: str | None = None,
    **_: Any,
) -> None:
    """Record that a job id was issued (so a poller can tell "queued" from "never heard
    of") and track it until it finishes (worker.queue.recovery); `before_task_publish`'s
    arguments, and the Redis at REDIS_URL to write to."""
    if not sender or not sender.startswith("voicemail.") or not headers:
        return
    if headers.get("voicemail_untracked"):  # a notification (notify.py): not ours to run
        return
    job_id = str(headers["id"])
    # One round trip per publish: it is on every job's path.
    with client.pipeline(transaction=False) as pipe:
        recovery.on_publish(pipe, job_id, sender, body, routing_key or "celery", headers)
        if not headers.get("retries"):
            record = {"task": sender, "argsrepr": headers.get("argsrepr"), "at": time.time()}
            pipe.set(job_key(job_id), json.dumps(record), ex=get_settings().result_expires)
        pipe.execute()
