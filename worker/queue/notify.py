"""Tell another service that a bulk settled, instead of making it poll.

A bulk submitted with `notify=TASK` settles (DONE, or CANCELLED with nothing in flight)
in `record_outcomes.lua`, which puts its id in an outbox in the same step. `drain`
sends, for each id there, the Celery task `TASK` by name to the bulk's notify queue
(`voicemail.notify` unless the submitter chose another), with one argument: the status
object `voicemail bulk status` prints. Workers drain after every chunk and once a
second; the producer drains after a submit or a cancel.

The task id is derived from the bulk id, so the rare repeat (a drainer killed between
sending and clearing the outbox; the lock lapses after `LOCK_SECONDS` and another
drainer sends again) carries the same id, and a consumer can drop it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..coordination.bulk_records import NOTIFY_OUTBOX, Keys
from ..coordination.bulk_status import read_status
from ..core import keys
from ..core.connections import text

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "voicemail.notify"  # no worker of this project consumes it
LOCK_SECONDS = 30
UNTRACKED = "voicemail_untracked"  # a publish header: not a job of ours to track


def task_id(bulk_id: str) -> str:
    return f"voicemail-bulk-{bulk_id}-settled"


def drain(client: Any, app: Any) -> int:
    """Send the notifications of every settled bulk in the outbox; returns how many."""
    sent = 0
    for raw in client.smembers(NOTIFY_OUTBOX):
        bulk_id = text(raw)
        lock = keys.notify_lock(bulk_id)
        if not client.set(lock, "1", nx=True, ex=LOCK_SECONDS):
            continue  # another process is sending it
        try:
            name, queue = client.hmget(Keys(bulk_id).meta, ["notify", "notify_queue"])
            if name is not None:
                status = read_status(client, bulk_id).as_dict()
                app.send_task(
                    text(name),
                    args=[status],
                    queue=text(queue) if queue else DEFAULT_QUEUE,
                    task_id=task_id(bulk_id),
                    headers={UNTRACKED: 1},
                )
                logger.info("bulk %s settled: sent %s", bulk_id, text(name))
                sent += 1
            client.srem(NOTIFY_OUTBOX, bulk_id)
        finally:
            client.delete(lock)
    return sent
