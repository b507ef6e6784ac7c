"""The producer API and the task definitions.

Other services import `enqueue_get`, `enqueue_update`, `poll` and `wait` from here,
or send `voicemail.get` / `voicemail.update` by name without importing anything.
"""

from .producer import (
    JobError,
    JobStatus,
    QueueUnavailable,
    enqueue_get,
    enqueue_update,
    poll,
    wait,
)

__all__ = [
    "JobError",
    "JobStatus",
    "QueueUnavailable",
    "enqueue_get",
    "enqueue_update",
    "poll",
    "wait",
]
