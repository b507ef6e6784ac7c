"""The producer API other Python services import: enqueue, poll, wait, and bulk updates.

    from tasks import enqueue_update, wait          # or: from voicemail_worker.producer import ...
    job = enqueue_update("acme", True, "vm@acme.ru")
    status = wait(job, timeout=30)     # JobStatus(state="SUCCESS", result={...}, error=None)

    producer = Producer("redis://redis:6379/0")    # or Producer(redis=client), like arq's pool
    job = producer.enqueue_update("acme", True, "vm@acme.ru")

The module-level functions are the default producer's, configured from the environment
(REDIS_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND); a `Producer` brings its own
connections. Neither sets a current Celery app, connects a signal or patches kombu.
Input is checked before anything is queued; a bad argument raises `InputError`,
an account missing from the credential store raises `AccountNotFound`, and an
unreachable Redis raises `QueueUnavailable` within seconds.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from worker.coordination.ordering import Ordering
from worker.core import keys
from worker.core.errors import (
    AccountNotFound,
    InputError,
    NotFound,
    QueueUnavailable,
    RevertRefused,
    VoicemailError,
    describe,
)
from worker.core.settings import Settings
from worker.core.validation import check_account, check_update
from worker.queue import deadletter
from worker.queue.app import BULK_QUEUE, CHUNK_TASK, create_app, job_key

from . import bulk
from .bulk.who import job_fields
from .connection import (
    Connection,
    active,
    credential_store,
    current,
    once,
    redis_client,
    redis_errors,
    safe_url,
    settings_for,
    url_of,
)

__all__ = [
    "AccountNotFound",
    "InputError",
    "JobError",
    "JobStatus",
    "NotFound",
    "Producer",
    "QueueUnavailable",
    "RevertRefused",
    "VoicemailError",
    "credential_store",
    "enqueue_get",
    "enqueue_update",
    "once",
    "poll",
    "redis_client",
    "redis_errors",
    "safe_url",
    "wait",
]

PENDING, STARTED, RETRY, SUCCESS, FAILURE, UNKNOWN = (
    "PENDING",
    "STARTED",
    "RETRY",
    "SUCCESS",
    "FAILURE",
    "UNKNOWN",
)
READY_STATES = frozenset({SUCCESS, FAILURE, "REVOKED", UNKNOWN})


@dataclass(frozen=True)
class JobError:
    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: str
    result: dict[str, Any] | None = None
    error: JobError | None = None

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    @property
    def ok(self) -> bool:
        return self.state == SUCCESS

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state": self.state}
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = {"type": self.error.type, "message": self.error.message}
        return out


def _require_account(account: str) -> None:
    with redis_errors():
        known = credential_store().exists(account)
    if not known:
        raise AccountNotFound(
            f"account {account!r} is not in the credential store "
            "(add it with `voicemail accounts import`)"
        )


def _numbered_if_known(account: str) -> int:
    """The store check and the update's number in one round trip (it is on every update's
    path); raises AccountNotFound. A number spent on a missing account is a harmless gap."""
    client = redis_client()
    if credential_store().exists_env(account):
        return int(Ordering(client).next_seq())
    with client.pipeline(transaction=False) as pipe:
        pipe.hexists(keys.ACCOUNTS, account)
        Ordering(client).next_seq(pipe=pipe)
        known, seq = pipe.execute()
    if not known:
        _require_account(account)  # says it, the same way as everywhere
    return int(seq)


def enqueue_get(account: str) -> str:
    name = check_account(account)
    _require_account(name)
    with redis_errors():
        return current().publish("voicemail.get", [name])


def enqueue_update(
    account: str,
    send: bool,
    email: str,
    *,
    idempotency_key: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> str:
    """Queue an update; with `idempotency_key`, a repeated call returns the first job's id.
    `actor` (default this process's `$USER@host`) and `reason` go to the journal."""
    name, send_, email_ = check_update(account, send, email)
    who = job_fields(actor, reason)
    job_id = str(uuid.uuid4())
    with redis_errors(), once(idempotency_key, job_id) as existing:
        if isinstance(existing, str):
            return existing
        seq = _numbered_if_known(name)
        current().publish(
            "voicemail.update", [name, send_, email_], kwargs={"seq": seq, **who}, task_id=job_id
        )
        return job_id


def _status(result: AsyncResult, check_known: bool = True) -> JobStatus:  # type: ignore[type-arg]
    job_id = str(result.id)
    state = str(result.state)
    if state == PENDING and check_known and not redis_client().exists(job_key(job_id)):
        return JobStatus(
            job_id,
            UNKNOWN,
            error=JobError("UnknownJob", f"no job {job_id} was enqueued, or its result expired"),
        )
    value = result.result
    if state == SUCCESS:
        return JobStatus(job_id, state, result=value if isinstance(value, dict) else None)
    if isinstance(value, BaseException):
        return JobStatus(job_id, state, error=JobError(**describe(value)))
    return JobStatus(job_id, state)


def poll(job_id: str) -> JobStatus:
    """The job's state now: PENDING, STARTED, RETRY, SUCCESS, FAILURE or UNKNOWN."""
    with redis_errors():
        return _status(AsyncResult(job_id, app=current().app))


def wait(job_id: str, timeout: float = 30.0) -> JobStatus:
    """Block until the job is finished or `timeout` seconds pass; returns its status either way.

    Listens on the result backend's pub/sub, so a result is usually seen as soon as
    it is stored; but Celery's pub/sub consumer was measured to miss a result now
    and then (one job in ~2,000 waited its whole timeout), so the wait is cut into
    slices of at most `_WAIT_SLICE` seconds with a direct read of the result between.
    """
    started = time.monotonic()
    deadline = started + timeout
    with redis_errors():
        result: AsyncResult = AsyncResult(job_id, app=current().app)  # type: ignore[type-arg]
        first = True
        while True:
            # Whether the id was ever issued matters only once the job is slow to show:
            # not on the first look, which is on every job's path (an unknown id is
            # given `_UNKNOWN_GRACE` anyway).
            status = _status(result, check_known=not first)
            first = False
            remaining = deadline - time.monotonic()
            # A job another service sent by name is unknown here until a worker starts
            # it; give it a moment before calling the id unknown.
            grace = status.state == UNKNOWN and time.monotonic() - started < _UNKNOWN_GRACE
            if (status.ready and not grace) or remaining <= 0:
                return status
            with contextlib.suppress(CeleryTimeout):
                result.get(
                    timeout=min(remaining, _WAIT_SLICE),
                    propagate=False,
                    disable_sync_subtasks=False,
                )


_WAIT_SLICE = 0.5
_UNKNOWN_GRACE = 2.0


def dead_letters() -> Iterator[deadletter.DeadLetter]:
    """Jobs that failed for good, oldest first."""
    with redis_errors():
        yield from deadletter.iterate(redis_client())


def purge_dead_letters(older_than: float | None = None) -> int:
    """Drop dead letters that failed more than `older_than` seconds ago (all, without it)."""
    with redis_errors():
        return deadletter.purge(redis_client(), older_than)


def redrive(job_id: str) -> str:
    """Send a dead job again, under a new id with the same arguments; returns the new id."""
    with redis_errors():
        client = redis_client()
        letter = deadletter.get(client, job_id)
        if letter is None:
            raise NotFound(f"no dead job {job_id}")
        kwargs = dict(letter.kwargs)
        if letter.error.get("type") == "Expired":
            # Its number is too old to be told from newer ones: it goes as a new update.
            kwargs["seq"] = Ordering(client).next_seq()
        queue = BULK_QUEUE if letter.task == CHUNK_TASK else "celery"
        new_id = current().publish(letter.task, letter.args, kwargs=kwargs, queue=queue)
        deadletter.forget(client, job_id)
        return new_id


P = ParamSpec("P")
R = TypeVar("R")


def _within(function: Callable[P, R]) -> Callable[Concatenate[Producer, P], R]:
    """`function`, run with this producer's connection as the current one."""

    def method(self: Producer, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.use():
            return function(*args, **kwargs)

    method.__name__ = method.__qualname__ = function.__name__
    method.__doc__ = function.__doc__
    return method


class Producer:
    """A producer with connections of its own, from arguments: a Redis URL (for the broker
    and results too unless `broker_url` / `result_backend` say otherwise), or a
    `redis.Redis` client (`redis=`), as arq's `create_pool` is. Other settings (the
    secret key, expiries) come from `settings` or the environment. Its methods are the
    module's functions; `with producer.use():` makes it the one they use."""

    def __init__(
        self,
        redis_url: str | None = None,
        broker_url: str | None = None,
        *,
        result_backend: str | None = None,
        redis: redis.Redis | None = None,
        settings: Settings | None = None,
    ) -> None:
        if redis is not None and redis_url is None:
            redis_url = url_of(redis)
        self.settings = settings_for(settings, redis_url, broker_url, result_backend)
        client = redis if redis is not None else _client_for(self.settings)
        self.connection = Connection(self.settings, create_app(self.settings), client)

    def use(self) -> AbstractContextManager[Connection]:
        return active(self.connection)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    enqueue_get = _within(enqueue_get)
    enqueue_update = _within(enqueue_update)
    poll = _within(poll)
    wait = _within(wait)
    dead_letters = _within(lambda: list(dead_letters()))
    redrive = _within(redrive)
    purge_dead_letters = _within(purge_dead_letters)
    submit_bulk = _within(bulk.submit_bulk)
    bulk_status = _within(bulk.bulk_status)
    bulk_failures = _within(bulk.bulk_failures)
    bulk_cancelled = _within(bulk.bulk_cancelled)
    retry_bulk = _within(bulk.retry_bulk)
    cancel_bulk = _within(bulk.cancel_bulk)
    pause_bulk = _within(bulk.pause_bulk)
    resume_bulk = _within(bulk.resume_bulk)
    change_bulk = _within(bulk.change_bulk)
    list_bulks = _within(bulk.list_bulks)
    revert_bulk = _within(bulk.revert_bulk)
    verify_bulk = _within(bulk.verify_bulk)
    plan_bulk = _within(bulk.plan_bulk)
    apply_plan = _within(bulk.apply_plan)


def _client_for(settings: Settings) -> redis.Redis:
    from worker.core.connections import redis_client as connect

    return connect(settings.redis_url)
