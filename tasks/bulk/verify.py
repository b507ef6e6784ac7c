"""The desired-state check: `verify_bulk(rows) -> bulk id`, `verify_summary`,
`drifted_rows`, `fix_drifted`.

A verify is a bulk that only reads (`verify` in its record): each row's account is read
through the queue, with the rate limits, cancel and status of any bulk, and never
written. An account that holds the row's values is `unchanged`; one that holds others
fails with a reason `Drifted: vendor has send=..., email=...` (counted in `drifted`
too). A row refused at submission is failed and counted `invalid`; any other failed row
could not be read (`unreachable`: unknown to the vendor, or errors outlasted the retries).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from worker.coordination.bulk_status import BulkStatus
from worker.core.validation import SELF_ACTOR

from ..connection import redis_errors
from .results import bulk_failures
from .submit import submit_as, submit_bulk
from .who import who_fields

DRIFTED_PREFIX = "Drifted: "


def verify_bulk(rows: Iterable[Any]) -> str:
    """Queue a read of every row's account; returns the bulk id. Sends no PATCH."""
    with redis_errors():
        return submit_as(uuid.uuid4().hex, rows, {"verify": 1, **who_fields()})


def verify_summary(status: BulkStatus) -> dict[str, Any]:
    """`{"bulk_id", "checked", "matching", "drifted", "unreachable", "invalid"}` (and
    `cancelled` when a cancel kept rows from being read)."""
    out: dict[str, Any] = {
        "bulk_id": status.bulk_id,
        "checked": status.total,
        "matching": status.unchanged,
        "drifted": status.drifted,
        "unreachable": max(status.failed - status.drifted - status.invalid, 0),
        "invalid": status.invalid,
    }
    if status.cancelled or status.pending:
        out["cancelled"] = status.cancelled + status.pending
    return out


def drifted_rows(bulk_id: str) -> Iterator[dict[str, Any]]:
    """The drifted rows, `{line, account, send, email, reason}`: send and email as the
    file asked, the reason saying what the vendor has."""
    return (f for f in bulk_failures(bulk_id) if str(f.get("reason")).startswith(DRIFTED_PREFIX))


def fix_drifted(bulk_id: str) -> str | None:
    """Submit the drifted rows of verify `bulk_id`, with the file's values, as a new bulk;
    its id, or None when nothing drifted."""
    rows = [
        {k: row.get(k) for k in ("line", "account", "send", "email")}
        for row in drifted_rows(bulk_id)
    ]
    why = f"verify {bulk_id} found the account drifted from its file (bulk verify --fix)"
    return submit_bulk(rows, actor=SELF_ACTOR, reason=why) if rows else None
