"""Bulk updates, the producer side.

    from tasks.bulk import submit_bulk, bulk_status
    bulk_id = submit_bulk([{"account": "acme", "send": True, "email": "vm@acme.ru"}, ...])
    bulk_status(bulk_id).summary()
    # {"bulk_id": ..., "state": "DONE", "total": 2, "succeeded": 2, "failed": 0, ...}

- `submit`: `submit_bulk`, `retry_bulk`;
- `results`: `bulk_status`, `bulk_failures`, `bulk_cancelled`;
- `lifecycle`: `cancel_bulk`, `pause_bulk`, `resume_bulk`, `list_bulks`;
- `revert`: `revert_bulk`;
- `verify`: `verify_bulk`, `verify_summary`, `drifted_rows`, `fix_drifted`;
- `plan`: `plan_bulk`, `keep_plan`, `plan_summary`, `plan_rows`, `apply_plan`;
- `schedule`: `cancel_revert` (`at=` and `revert_after=` are options of `submit_bulk`
  and `apply_plan`).
"""

from __future__ import annotations

from worker.coordination.bulk_status import BulkStatus
from worker.core.errors import RevertRefused

from .lifecycle import cancel_bulk, change_bulk, list_bulks, pause_bulk, resume_bulk
from .plan import PlanRefused, apply_plan, keep_plan, plan_bulk, plan_rows, plan_summary
from .results import bulk_cancelled, bulk_failures, bulk_status
from .revert import revert_bulk
from .schedule import cancel_revert
from .submit import retry_bulk, submit_bulk
from .verify import drifted_rows, fix_drifted, verify_bulk, verify_summary

__all__ = [
    "BulkStatus",
    "PlanRefused",
    "RevertRefused",
    "apply_plan",
    "bulk_cancelled",
    "bulk_failures",
    "bulk_status",
    "cancel_bulk",
    "cancel_revert",
    "change_bulk",
    "drifted_rows",
    "fix_drifted",
    "keep_plan",
    "list_bulks",
    "pause_bulk",
    "plan_bulk",
    "plan_rows",
    "plan_summary",
    "resume_bulk",
    "retry_bulk",
    "revert_bulk",
    "submit_bulk",
    "verify_bulk",
    "verify_summary",
]
