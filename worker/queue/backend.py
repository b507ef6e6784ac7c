"""The result backend: Celery's Redis backend, minus stored tracebacks.

A poller reads a failure as its type and message (`UserNotFound: User not
found.`); the traceback, with file paths and code, stays in the worker's log.
Configured as `worker.backend:RedisBackend+redis://...` (Celery's `class+URL`).
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend as _CeleryRedisBackend
from celery.backends.redis import SentinelBackend as _CelerySentinelBackend


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
        return super().store_result(task_id, result, state, None, request, **kwargs)  # type: ignore[misc]


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
