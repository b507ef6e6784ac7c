"""The producer API: `Producer`, the default producer's functions, and every error they
raise (the same objects as `tasks.producer`'s, see the package's docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._load import tasks_module

if TYPE_CHECKING:
    from tasks.producer import (
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
    from worker.core.errors import CredentialError, Expired

__all__ = [
    "AccountNotFound",
    "CredentialError",
    "Expired",
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

if not TYPE_CHECKING:
    from worker.core.errors import CredentialError, Expired

    _producer = tasks_module("producer")
    globals().update({name: getattr(_producer, name) for name in __all__ if name not in globals()})
