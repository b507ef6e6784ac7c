"""What `bulk status` and `bulk list` show, read from a bulk's records (`bulk_records`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..core import keys
from ..core.connections import text
from .bulk_records import COUNTERS, FAILED_KINDS, RATE_WINDOW, Keys
from .waves import wave_status

# Every state a bulk can be in; `done` says which of them are settled.
STATES = (
    *("UNKNOWN", "SUBMITTING", "RUNNING", "PAUSED", "DONE", "DRY_RUN", "CANCELLED"),
    "SCHEDULED",  # submitted with --at, waiting for its time (worker.coordination.schedule)
)


@dataclass(frozen=True)
class BulkStatus:
    bulk_id: str
    state: str  # one of STATES
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    unchanged: int = 0
    cancelled: int = 0
    pending: int = 0
    # Rows whose values a read-back put back after a late landing of an older update; may
    # grow after the bulk is DONE (worker.coordination.readback).
    corrected: int = 0
    stale: int = 0  # failed rows of an applied plan: the account changed since the plan
    drifted: int = 0  # failed rows of a verify: the account holds other values
    invalid: int = 0  # failed rows refused at submission
    would_send: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    paused_at: float | None = None
    cancelled_at: float | None = None
    rate: float = 0.0
    revertible: bool = False
    reverts: str | None = None  # the bulk this one undoes
    reverted_by: str | None = None
    kind: str = "update"  # or "verify", "plan": bulks that only read
    applies: str | None = None  # the plan this bulk applies
    applied_by: str | None = None  # a plan's: the bulk that applied it
    scheduled_at: float | None = None  # when a SCHEDULED bulk starts
    revert_after: float | None = None  # seconds after it settles that it is reverted
    revert_at: float | None = None  # when its timed revert runs, once it settled
    wave: int = 1  # the wave running, or the last one run (coordination.waves)
    waves: int = 1
    paused_reason: str | None = None  # why a PAUSED bulk paused itself
    actor: str | None = None  # who submitted it, and why (the journal's; tasks.bulk.who)
    reason: str | None = None

    @property
    def done(self) -> bool:
        """Settled: nothing more will happen (a cancelled bulk once its requests in flight
        have finished)."""
        if self.state == "CANCELLED":
            return self.pending == 0
        return self.state in ("DONE", "DRY_RUN", "UNKNOWN")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bulk_id": self.bulk_id,
            "state": self.state,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
            "unchanged": self.unchanged,
            "cancelled": self.cancelled,
            "corrected": self.corrected,
            "stale": self.stale,
        }
        if self.would_send is not None:
            out["would_send"] = self.would_send
        if self.reverts:
            out["reverts"] = self.reverts
        if self.applies:
            out["plan_id"] = self.applies
        return out

    def listing(self) -> dict[str, Any]:
        """One line of `bulk list`."""
        return {**self.summary(), "created_at": _iso(self.created_at)}

    def as_dict(self) -> dict[str, Any]:
        out = {
            **self.summary(),
            "revertible": self.revertible,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "rate": round(self.rate, 1),
        }
        if self.paused_at is not None:
            out["paused_at"] = _iso(self.paused_at)
        out.update(wave=self.wave, waves=self.waves)
        if self.paused_reason is not None:
            out["paused_reason"] = self.paused_reason
        if self.cancelled_at is not None:
            out["cancelled_at"] = _iso(self.cancelled_at)
        if self.reverted_by:
            out["reverted_by"] = self.reverted_by
        if self.kind != "update":
            out["kind"] = self.kind
        if self.applied_by:
            out["applied_by"] = self.applied_by
        if self.actor:
            out["actor"] = self.actor
        if self.reason:
            out["reason"] = self.reason
        out.update(self._timed())
        return out

    def _timed(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.scheduled_at is not None:
            out["scheduled_at"] = _iso(self.scheduled_at)
        if self.revert_at is not None:
            out["revert_at"] = _iso(self.revert_at)
        elif self.revert_after is not None and not self.done:
            # (Settled with no revert_at: it changed nothing, so there is nothing to undo.)
            after = self.revert_after  # seconds: 7200, not 7200.0
            out["revert_after"] = int(after) if after.is_integer() else after
        return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _num(meta: dict[str, str], name: str) -> float | None:
    value = meta.get(name)
    return float(value) if value not in (None, "") else None


def _state(meta: dict[str, str], finished: float | None) -> str:
    submitted = meta.get("total") is not None
    if meta.get("dry_run") == "1":
        return "DRY_RUN" if submitted else "SUBMITTING"
    if meta.get("cancelled_at"):
        return "CANCELLED"
    if finished is not None:
        return "DONE"
    if meta.get("scheduled_at") and meta.get("paused_at"):
        return "SCHEDULED" if submitted else "SUBMITTING"
    if meta.get("paused_at"):
        return "PAUSED"
    return "RUNNING" if submitted else "SUBMITTING"


def status_from(
    bulk_id: str, meta: dict[str, str], rate_counts: dict[str, str], now: float
) -> BulkStatus:
    if not meta:
        return BulkStatus(bulk_id, "UNKNOWN")
    counts = {name: int(meta.get(name, 0)) for name in COUNTERS.values()}
    total_final = meta.get("total")
    total = int(total_final) if total_final is not None else int(meta.get("rows", 0))
    finished = _num(meta, "finished_at")
    state = _state(meta, finished)
    # Current rate: outcomes over the last full seconds (the running one is partial).
    second = int(now)
    recent = sum(int(rate_counts.get(str(s), 0)) for s in range(second - RATE_WINDOW, second))
    if state == "DONE" and finished is not None:
        started = _num(meta, "started_at") or _num(meta, "created_at") or finished
        recent_rate = (counts["succeeded"] + counts["unchanged"]) / max(finished - started, 1e-3)
    else:
        recent_rate = recent / RATE_WINDOW
    would = meta.get("would_send")
    kinds = {name: int(meta.get(name, 0)) for name in FAILED_KINDS.values()}
    return BulkStatus(
        bulk_id=bulk_id,
        state=state,
        total=total,
        pending=max(total - sum(counts.values()), 0) if state != "DRY_RUN" else 0,
        would_send=int(would) if would is not None else None,
        created_at=_num(meta, "created_at"),
        started_at=_num(meta, "started_at"),
        finished_at=finished,
        paused_at=_num(meta, "paused_at") if state == "PAUSED" else None,
        cancelled_at=_num(meta, "cancelled_at"),
        rate=recent_rate,
        revertible=meta.get("revertible") == "1",
        reverts=meta.get("reverts") or None,
        reverted_by=meta.get("reverted_by") or None,
        corrected=int(meta.get("corrected", 0)),
        kind=_kind(meta),
        applies=meta.get("applies") or None,
        applied_by=meta.get("applied_by") or None,
        scheduled_at=_num(meta, "scheduled_at") if state in ("SCHEDULED", "SUBMITTING") else None,
        revert_after=_num(meta, "revert_after"),
        revert_at=_num(meta, "revert_at"),
        paused_reason=meta.get("paused_reason") if state == "PAUSED" else None,
        actor=meta.get("actor") or None,
        reason=meta.get("reason") or None,
        **wave_status(meta),
        **counts,
        **kinds,
    )


def _kind(meta: dict[str, str]) -> str:
    if meta.get("verify") == "1":
        return "verify"
    return "plan" if meta.get("plan") == "1" else "update"


def read_status(client: Any, bulk_id: str) -> BulkStatus:
    """The status of one bulk, from a synchronous Redis client."""
    keys = Keys(bulk_id)
    now = time.time()
    seconds = [str(s) for s in range(int(now) - RATE_WINDOW, int(now))]
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.meta)
        pipe.hmget(keys.rate, seconds)
        raw_meta, counts = pipe.execute()
    meta = {text(k): text(v) for k, v in raw_meta.items()}
    rate = {s: text(c) for s, c in zip(seconds, counts, strict=True) if c is not None}
    return status_from(bulk_id, meta, rate, now)


def recent_bulks(client: Any, limit: int) -> list[BulkStatus]:
    """The `limit` most recent bulks still on record, newest first."""
    out: list[BulkStatus] = []
    start = 0
    while len(out) < limit:
        # Read a few more than asked: some ids in the index may have expired already.
        ids = [text(i) for i in client.zrevrange(keys.BULKS, start, start + limit * 2 - 1)]
        if not ids:
            break
        start += len(ids)
        with client.pipeline(transaction=False) as pipe:
            for bulk_id in ids:
                pipe.hgetall(Keys(bulk_id).meta)
            metas = pipe.execute()
        now = time.time()
        for bulk_id, raw in zip(ids, metas, strict=True):
            meta = {text(k): text(v) for k, v in raw.items()}
            if meta:
                out.append(status_from(bulk_id, meta, {}, now))
    return out[:limit]
