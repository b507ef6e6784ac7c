"""Bulk updates, the producer side.

    from tasks.bulk import submit_bulk, bulk_status
    bulk_id = submit_bulk([{"account": "acme", "send": True, "email": "vm@acme.ru"}, ...])
    bulk_status(bulk_id).summary()
    # {"bulk_id": ..., "state": "DONE", "total": 2, "succeeded": 2, "failed": 0, ...}

- `submit`: `submit_bulk`, `bulk_status`, `bulk_failures`, `bulk_cancelled`, `retry_bulk`;
- `lifecycle`: `cancel_bulk`, `pause_bulk`, `resume_bulk`, `list_bulks`;
- `revert`: `revert_bulk`.
"""

from __future__ import annotations

from worker.coordination.bulk_status import BulkStatus
from worker.core.errors import RevertRefused

from .lifecycle import cancel_bulk, change_bulk, list_bulks, pause_bulk, resume_bulk
from .revert import revert_bulk
from .submit import bulk_cancelled, bulk_failures, bulk_status, retry_bulk, submit_bulk

__all__ = [
    "BulkStatus",
    "RevertRefused",
    "bulk_cancelled",
    "bulk_failures",
    "bulk_status",
    "cancel_bulk",
    "change_bulk",
    "list_bulks",
    "pause_bulk",
    "resume_bulk",
    "retry_bulk",
    "revert_bulk",
    "submit_bulk",
]
