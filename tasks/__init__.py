"""The contract other services use: the producer API and the task definitions.

Other services import `enqueue_get`, `enqueue_update`, `poll`, `wait`, `Producer` and
every error the API raises from here (`producer`; also `voicemail_worker.producer`, for
a service with a `tasks` module of its own), bulk operations from `tasks.bulk`, or send
`voicemail.get` /
`voicemail.update` by name without importing anything. The task definitions
(`voicemail`, `chunk`) are loaded by workers only: a producer never imports them.

The names load on first use (PEP 562), so the `voicemail` CLI can start, and report
a bad environment variable in one line, before the Celery app is built.
May import: `worker` (its subpackages; never `worker.queue.worker_signals`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .producer import (
        AccountNotFound,
        InputError,
        JobError,
        JobStatus,
        Producer,
        QueueUnavailable,
        RevertRefused,
        VoicemailError,
        enqueue_get,
        enqueue_update,
        poll,
        wait,
    )

__all__ = [
    "AccountNotFound",
    "InputError",
    "JobError",
    "JobStatus",
    "Producer",
    "QueueUnavailable",
    "RevertRefused",
    "VoicemailError",
    "enqueue_get",
    "enqueue_update",
    "poll",
    "wait",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".producer", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
