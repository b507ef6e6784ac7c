"""Stopping and starting a bulk, and listing bulks: `cancel_bulk`, `pause_bulk`,
`resume_bulk`, `list_bulks`."""

from __future__ import annotations

import logging

from worker.coordination import bulk_control
from worker.coordination.bulk_records import RECORD_SCRIPT, Keys, record_args
from worker.coordination.bulk_status import BulkStatus, read_status, recent_bulks
from worker.core.errors import InputError
from worker.core.settings import get_settings
from worker.queue import notify as _notify

from ..connection import current, redis_client, redis_errors

logger = logging.getLogger(__name__)


def _apply(bulk_id: str, op: bulk_control.Op) -> tuple[bool, BulkStatus]:
    """Run `op` on the bulk; returns whether it changed anything, and the status after."""
    ttl = get_settings().result_expires
    with redis_errors():
        client = redis_client()
        change = bulk_control.control(client, bulk_id, op)
        # Parked chunks stay on record until each is queued: interrupted here, a worker's
        # sweep queues the rest (bulk_control.wake_orphans).
        bulk_control.queue_woken(client, bulk_id, change.parked, _send)
        if change.parked:
            logger.info("bulk %s: %d parked chunks queued again", bulk_id, len(change.parked))
        if change.changed and op == "cancel":
            # Every row may have been recorded by now: stamp finished_at in that case.
            keys = Keys(bulk_id)
            client.register_script(RECORD_SCRIPT)(
                keys=keys.record_keys(), args=record_args([], ttl)
            )
            _notify.drain(client, current().app)
        return change.changed, read_status(client, bulk_id)


def _send(bulk_id: str, number: int, retries: int) -> None:
    current().send_chunk(bulk_id, number, retries)


def cancel_bulk(bulk_id: str) -> BulkStatus:
    """Stop a bulk: within a second no worker starts another request for it; requests in
    flight finish. Rows never sent are counted as `cancelled`. Returns its status (a
    finished or unknown bulk is left as it is)."""
    return _apply(bulk_id, "cancel")[1]


def pause_bulk(bulk_id: str) -> BulkStatus:
    """Hold a bulk: within a second no worker starts another request for it, until
    `resume_bulk`. Its chunks wait in Redis, and nothing of it expires while it waits."""
    return _apply(bulk_id, "pause")[1]


def resume_bulk(bulk_id: str) -> BulkStatus:
    """Let a paused bulk go on where it stopped."""
    return _apply(bulk_id, "resume")[1]


def change_bulk(bulk_id: str, op: bulk_control.Op) -> tuple[bool, BulkStatus]:
    """`cancel_bulk`, `pause_bulk` or `resume_bulk`, saying whether anything changed."""
    return _apply(bulk_id, op)


def list_bulks(limit: int = 20) -> list[BulkStatus]:
    """The most recent bulks still on record, newest first."""
    if limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    with redis_errors():
        return recent_bulks(redis_client(), limit)
