"""The producer API other Python services import: enqueue, poll, wait.

    from tasks import enqueue_update, wait
    job = enqueue_update("acme", True, "vm@acme.ru")
    status = wait(job, timeout=30)     # JobStatus(state="SUCCESS", result={...}, error=None)

Input is checked before anything is queued; a bad argument raises `InputError`,
an account missing from the credential store raises `AccountNotFound`, and an
unreachable Redis raises `QueueUnavailable` within seconds.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kombu.exceptions
import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from worker.coordination.ordering import Ordering
from worker.core import keys
from worker.core.errors import AccountNotFound, InputError, VoicemailError, describe
from worker.core.settings import get_settings
from worker.core.validation import check_account, check_update
from worker.queue import deadletter
from worker.queue.app import BULK_QUEUE, CHUNK_TASK, app, job_key, producer_connections
from worker.store.credentials import CredentialStore

from .idempotency import JOB_LEASE, IdempotencyKey

PENDING, STARTED, RETRY, SUCCESS, FAILURE, UNKNOWN = (
    "PENDING",
    "STARTED",
    "RETRY",
    "SUCCESS",
    "FAILURE",
    "UNKNOWN",
)
READY_STATES = frozenset({SUCCESS, FAILURE, "REVOKED", UNKNOWN})


class QueueUnavailable(VoicemailError):
    """Redis (the broker or the result store) cannot be reached."""


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


def safe_url(url: str) -> str:
    """`url` with its password starred out, fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn an unreachable Redis (or broker) into `QueueUnavailable`, naming the URL."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError) as exc:
        url = safe_url(get_settings().redis_url)
        raise QueueUnavailable(f"cannot reach Redis at {url}: {exc}") from None


def redis_client() -> redis.Redis:
    """This producer's client for REDIS_URL (job records, idempotency keys, bulk records)."""
    return producer_connections().redis


def credential_store() -> CredentialStore:
    return producer_connections().store


def _require_account(account: str) -> None:
    with redis_errors():
        known = credential_store().exists(account)
    if not known:
        raise AccountNotFound(
            f"account {account!r} is not in the credential store "
            "(add it with `voicemail accounts import`)"
        )


@contextmanager
def once(
    key: str | None, new_id: str, *, lease: float = JOB_LEASE
) -> Iterator[IdempotencyKey | str | None]:
    """With an idempotency key: the id already queued for it (a `str`), or, the first
    time, the key itself (claimed for `new_id`; the caller queues the work and `once`
    settles it). Without one: None. Queueing that fails drops the claim again, so a
    retried call is never told about work that never was; a caller that dies before
    settling leaves a claim that lapses after `lease` seconds (tasks/idempotency.py)."""
    if key is None:
        yield None
        return
    idem = IdempotencyKey(redis_client(), key, lease, get_settings().result_expires)
    found = idem.wait_settled(new_id, lease + 1) if lease <= JOB_LEASE else idem.claim(new_id)
    if found.state in ("done", "busy"):
        yield found.id
        return
    try:
        yield idem
    except BaseException:
        idem.drop(new_id)
        raise
    idem.settle(new_id)


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
        return str(app.send_task("voicemail.get", args=[name]).id)


def enqueue_update(
    account: str, send: bool, email: str, *, idempotency_key: str | None = None
) -> str:
    """Queue an update; with `idempotency_key`, a repeated call returns the first job's id."""
    name, send_, email_ = check_update(account, send, email)
    job_id = str(uuid.uuid4())
    with redis_errors(), once(idempotency_key, job_id) as existing:
        if isinstance(existing, str):
            return existing
        seq = _numbered_if_known(name)
        app.send_task(
            "voicemail.update", args=[name, send_, email_], kwargs={"seq": seq}, task_id=job_id
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
        return _status(AsyncResult(job_id, app=app))


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
        result: AsyncResult = AsyncResult(job_id, app=app)  # type: ignore[type-arg]
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


def redrive(job_id: str) -> str:
    """Send a dead job again, under a new id with the same arguments; returns the new id."""
    with redis_errors():
        client = redis_client()
        letter = deadletter.get(client, job_id)
        if letter is None:
            raise InputError(f"no dead job {job_id}")
        new_id = str(uuid.uuid4())
        options: dict[str, Any] = {}
        kwargs = dict(letter.kwargs)
        if letter.error.get("type") == "Expired":
            # Its number is too old to be told from newer ones: it goes as a new update.
            kwargs["seq"] = Ordering(client).next_seq()
        if letter.task == CHUNK_TASK:
            options["queue"] = BULK_QUEUE
        app.send_task(letter.task, args=letter.args, kwargs=kwargs, task_id=new_id, **options)
        deadletter.forget(client, job_id)
        return new_id
