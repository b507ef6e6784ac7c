"""The outcome a bulk row is recorded with when it is not simply applied."""

from __future__ import annotations

from typing import Any

from ..coordination.bulk_records import (
    DRIFTED,
    FAILED,
    STALE,
    SUCCEEDED,
    UNCHANGED,
    BulkRow,
    Outcome,
    failure_reason,
)
from ..coordination.ordering import Verdict, expired_reason
from ..core.errors import Drifted, Stale
from ..core.logs import redact
from ..core.settings import Settings


def _row(row: BulkRow) -> dict[str, Any]:
    """What `bulk retry` needs to send the row again (a revert's row: what it expects)."""
    out: dict[str, Any] = {"account": row.account, "send": row.send, "email": row.email}
    if row.expect is not None:
        out["expect"] = list(row.expect)
    return out


def cancelled(row: BulkRow) -> Outcome:
    return Outcome.cancelled(row.line, **_row(row))


def failed(row: BulkRow, exc: BaseException) -> Outcome:
    """Failed with its reason; a Stale or Drifted row counted in its own field too."""
    kind = STALE if isinstance(exc, Stale) else DRIFTED if isinstance(exc, Drifted) else FAILED
    return Outcome.failed(row.line, failure_reason(exc), kind, **_row(row))


def failed_unexpectedly(row: BulkRow, exc: BaseException) -> Outcome:
    """An error no layer mapped (a library's ValueError, say): its text may quote what it
    was given, so a header value is taken out of it before it is stored."""
    reason = f"{type(exc).__name__}: {redact(str(exc))}"[:500]
    return Outcome.failed(row.line, reason, **_row(row))


def settled_elsewhere(row: BulkRow, verdict: Verdict, settings: Settings) -> Outcome:
    """A row whose claim says another delivery, or a newer update, settled it."""
    if verdict == Verdict.APPLIED:  # applied by an earlier delivery that died before recording
        return Outcome(row.line, SUCCEEDED)
    if verdict == Verdict.SUPERSEDED:  # a later update of the account is already applied
        return Outcome(row.line, UNCHANGED)
    if verdict == Verdict.EXPIRED:
        reason = f"Expired: {expired_reason(row.seq, settings.ordering_ttl)}"
        return Outcome.failed(row.line, reason, **_row(row))
    if verdict == Verdict.NOT_ISSUED:
        reason = f"InputError: seq {row.seq} was never issued"
        return Outcome.failed(row.line, reason, **_row(row))
    return Outcome.failed(  # LOCKED on the last run: another update kept it
        row.line, "AccountBusy: another update of this account kept it locked", **_row(row)
    )
