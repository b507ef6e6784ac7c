"""The timed revert's task: `voicemail.timed_revert(bulk_id)`, sent by a worker's tick
once a bulk's `revert_at` is due (worker.coordination.schedule). Runs in the worker only.

The revert is submitted once, however often the task is delivered: under the
idempotency key `timed-revert:<bulk id>`, kept alive while its rows stream. A task
that dies mid-stream lets its claim lapse; the tick sends the task again once the
schedule's lease lapses, and that one cancels the half-submitted revert and submits it
whole. The entry leaves the schedule only once the revert is submitted (or refused).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from worker.coordination import schedule
from worker.coordination.bulk_records import Keys
from worker.core.connections import text
from worker.core.errors import RevertRefused
from worker.queue import context
from worker.queue.app import TIMED_REVERT_TASK, app

from .bulk.lifecycle import cancel_bulk
from .bulk.revert import revert_bulk
from .connection import Connection, active, once, redis_client
from .idempotency import BULK_LEASE

logger = logging.getLogger(__name__)

CLAIM = "timed-revert:"  # + bulk id: the idempotency key of its timed revert


@app.task(name=TIMED_REVERT_TASK, acks_late=True)
def timed_revert(bulk_id: str) -> dict[str, Any]:
    """Submit the revert of `bulk_id` that `--revert-after` scheduled."""
    ctx = context.current()
    with active(Connection(ctx.settings, app, ctx.redis)):
        revert_id = run_timed_revert(str(bulk_id))
    return {"bulk_id": bulk_id, "revert_bulk_id": revert_id}


def run_timed_revert(bulk_id: str) -> str | None:
    """The timed revert's bulk id; None when it was dropped (`bulk cancel --revert`),
    refused, or another delivery is still submitting it."""
    client = redis_client()
    if not schedule.revert_pending(client, bulk_id):
        return None  # dropped since the tick took it
    try:
        revert_id = _submit_once(client, bulk_id)
    except RevertRefused as exc:  # reverted by hand already, say: nothing left to do
        logger.warning("bulk %s: timed revert not run: %s", bulk_id, exc)
        revert_id = ""
    if revert_id is None:
        return None  # another delivery is at it: the entry stays until it is done
    schedule.revert_done(client, bulk_id)
    if revert_id:
        logger.info("bulk %s: timed revert submitted as bulk %s", bulk_id, revert_id)
    return revert_id or None


def _submit_once(client: Any, bulk_id: str) -> str | None:
    new_id = uuid.uuid4().hex
    with once(CLAIM + bulk_id, new_id, lease=BULK_LEASE) as claimed:
        if isinstance(claimed, str):  # submitted already, or being submitted
            return claimed if client.hexists(Keys(claimed).meta, "total") else None
        assert claimed is not None
        if claimed.took_over:  # a delivery died mid-way: its revert may be half-submitted
            earlier = claimed.took_over
            if client.hexists(Keys(earlier).meta, "total"):
                return earlier  # it was submitted whole before its submitter died
            cancel_bulk(earlier)
            if text(client.hget(Keys(bulk_id).meta, "reverted_by") or b"") == earlier:
                client.hdel(Keys(bulk_id).meta, "reverted_by")
        with claimed.kept_alive(new_id):
            # The project's own action: the journal's actor is `voicemail`, its reason
            # the --revert-after that scheduled it (worker.coordination.journal).
            return revert_bulk(bulk_id, new_id=new_id)
