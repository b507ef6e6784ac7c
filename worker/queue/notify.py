"""Tell another service that a bulk settled, instead of making it poll.

A bulk submitted with `notify=TASK` settles (DONE, or CANCELLED with nothing in flight)
in `record_outcomes.lua`, which puts its id in an outbox in the same step; so does a
bulk that pauses itself (`waves.lua`: a wave ended with --wave-pause, or --max-failures
stopped it), its status then PAUSED. `drain`
sends, for each id there, the Celery task `TASK` by name to the bulk's notify queue
(`voicemail.notify` unless the submitter chose another), with one argument: the status
object `voicemail bulk status` prints. Workers drain after every chunk and once a
second; the producer drains after a submit or a cancel.

`VOICEMAIL_NOTIFY_TASKS` and `VOICEMAIL_NOTIFY_QUEUES` (comma-separated fnmatch globs;
unset: any) limit which tasks and queues a submitter may name: checked at submit
(`refusal`, an InputError naming the setting), and again here before sending, so a
notification refused since (or written by hand) is logged and dropped from the outbox.

The task id is derived from the bulk id, so the rare repeat (a drainer killed between
sending and clearing the outbox; the lock lapses after `LOCK_SECONDS` and another
drainer sends again) carries the same id, and a consumer can drop it.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

from ..coordination.bulk_records import NOTIFY_OUTBOX, Keys
from ..coordination.bulk_status import read_status
from ..core import keys
from ..core.connections import text
from ..core.errors import InputError
from ..core.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "voicemail.notify"  # no worker of this project consumes it
LOCK_SECONDS = 30
UNTRACKED = "voicemail_untracked"  # a publish header: not a job of ours to track


def task_id(bulk_id: str, status: dict[str, Any] | None = None) -> str:
    """One id per event: the bulk settled, or paused itself (waves: a wave ended with
    --wave-pause, or --max-failures stopped it) at `paused_at`."""
    if status is not None and status.get("state") == "PAUSED":
        return f"voicemail-bulk-{bulk_id}-paused-{status.get('paused_at')}"
    return f"voicemail-bulk-{bulk_id}-settled"


def refusal(settings: Settings, task: str, queue: str) -> str | None:
    """Why the allow-lists refuse to send `task` to `queue`, or None when they let it."""
    for value, globs, variable in (
        (task, settings.notify_tasks, "VOICEMAIL_NOTIFY_TASKS"),
        (queue, settings.notify_queues, "VOICEMAIL_NOTIFY_QUEUES"),
    ):
        if globs is None:
            continue
        patterns = [glob.strip() for glob in globs.split(",") if glob.strip()]
        if not any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns):
            return f"{value!r} is not allowed by {variable}={globs}"
    return None


def checked_options(notify: str | None, queue: str | None) -> dict[str, str]:
    """A bulk record's `notify` and `notify_queue` fields; InputError when they are not
    names, or the allow-lists refuse them."""
    if notify is None:
        if queue is not None:
            raise InputError("notify_queue is given without notify (the task to send)")
        return {}
    if not notify.strip() or any(ch.isspace() for ch in notify):
        raise InputError(f"notify must be a Celery task name, got {notify!r}")
    if queue is not None and (not queue.strip() or any(ch.isspace() for ch in queue)):
        raise InputError(f"notify_queue must be a queue name, got {queue!r}")
    queue = queue or DEFAULT_QUEUE
    refused = refusal(get_settings(), notify, queue)
    if refused is not None:
        raise InputError(f"cannot notify: {refused}")
    return {"notify": notify, "notify_queue": queue}


def _event_status(client: Any, bulk_id: str) -> dict[str, Any] | None:
    """The status to send; None when the event is over: a bulk that paused itself was
    resumed before its notification went out (the resumer knows; its settling will be
    sent in its turn)."""
    status = read_status(client, bulk_id)
    if status.state in ("RUNNING", "SUBMITTING"):
        logger.info("bulk %s: resumed before its pause was notified; not sent", bulk_id)
        return None
    return status.as_dict()


def drain(client: Any, app: Any, settings: Settings | None = None) -> int:
    """Send the notifications of every settled bulk in the outbox; returns how many."""
    settings = settings or get_settings()
    sent = 0
    for raw in client.smembers(NOTIFY_OUTBOX):
        bulk_id = text(raw)
        lock = keys.notify_lock(bulk_id)
        if not client.set(lock, "1", nx=True, ex=LOCK_SECONDS):
            continue  # another process is sending it
        try:
            name, queue = client.hmget(Keys(bulk_id).meta, ["notify", "notify_queue"])
            target = text(queue) if queue else DEFAULT_QUEUE
            refused = None if name is None else refusal(settings, text(name), target)
            if refused is not None:
                logger.error("bulk %s: notification not sent, dropped: %s", bulk_id, refused)
            elif name is not None and (status := _event_status(client, bulk_id)) is not None:
                app.send_task(
                    text(name),
                    args=[status],
                    queue=target,
                    task_id=task_id(bulk_id, status),
                    headers={UNTRACKED: 1},
                )
                logger.info("bulk %s %s: sent %s", bulk_id, status["state"], text(name))
                sent += 1
            client.srem(NOTIFY_OUTBOX, bulk_id)
        finally:
            client.delete(lock)
    return sent
