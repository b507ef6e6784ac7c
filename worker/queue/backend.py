"""The result backend: Celery's Redis backend, minus stored tracebacks, plus dead letters.

A poller reads a failure as its type and message (`UserNotFound: User not
found.`); the traceback, with file paths and code, stays in the worker's log.
A job's dead letter is written before its FAILURE is stored, so whoever saw the
failure through `wait` finds it in `voicemail dead list` (Celery's `task_failure`
signal fires only after the result is stored, celery/app/trace.py handle_failure).
A job whose STARTED state cannot be stored (Redis gone at that instant) runs all the same.
Configured as `worker.queue.backend:RedisBackend+redis://...` (Celery's `class+URL`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend as _CeleryRedisBackend
from celery.backends.redis import SentinelBackend as _CelerySentinelBackend
from redis.exceptions import RedisError

from ..core.settings import get_settings
from . import deadletter

logger = logging.getLogger(__name__)


def dead_letter_store() -> Any:
    """The Redis that holds dead letters (REDIS_URL, which may not be the result backend's):
    the worker context's. None outside a worker process: only a worker stores failures."""
    from . import context  # loaded by then in a worker; a producer never gets here

    ctx = context.started()
    return None if ctx is None else ctx.redis


def _dead_letter(client: Any, task_id: str, request: Any, exc: Any) -> None:
    name = getattr(request, "task", None) or ""
    if not name.startswith("voicemail.") or not isinstance(exc, BaseException):
        return
    args, kwargs = getattr(request, "args", None), getattr(request, "kwargs", None)
    retries = getattr(request, "retries", 0) or 0
    letter = deadletter.letter_from(task_id, name, args, kwargs, exc, retries)
    try:
        deadletter.record(client, letter, keep_days=get_settings().dead_letter_days)
    except Exception:  # the failure itself is still stored; log that the list missed it
        logger.exception("could not record dead letter for job %s", task_id)


class _NoTraceback:
    def store_result(
        self,
        task_id: Any,
        result: Any,
        state: Any,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        if state == states.FAILURE and request is not None:
            client = dead_letter_store()
            if client is not None:
                _dead_letter(client, task_id, request, result)
        try:
            return super().store_result(task_id, result, state, None, request, **kwargs)  # type: ignore[misc]
        except RedisError:
            if state != states.STARTED:
                raise
            # STARTED only informs. Raised, it fails the job outside its body (Celery's
            # internal error): a FAILURE is stored once Redis is back, and the message
            # is then forgotten, never run, as a chunk at the instant of a failover was.
            # The body goes on and meets Redis's absence its own way (a re-queue).
            logger.warning("job %s: could not store its STARTED state", task_id)
            return result


class RedisBackend(_NoTraceback, _CeleryRedisBackend):
    pass


class SentinelBackend(_NoTraceback, _CelerySentinelBackend):
    pass


def backend_url(url: str) -> str:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return f"{__name__}:RedisBackend+{url}"
    if url.startswith("sentinel://"):
        return f"{__name__}:SentinelBackend+{url}"
    return url
