"""A bulk job's state in Redis, shared by the producer that fills it and the workers that run it.

Keys, all under one hash tag so a Redis Cluster keeps them on one node, all
expiring with the results (`VOICEMAIL_RESULT_EXPIRES`):

    voicemail:bulk:{ID}            hash   created_at, started_at, finished_at, rows, total,
                                          chunks, would_send, succeeded, failed, unchanged, flags
    voicemail:bulk:{ID}:chunk:N    string JSON rows [[line, account, send, email], ...]
    voicemail:bulk:{ID}:done       hash   line -> outcome ("s" succeeded, "f" failed, "u" unchanged)
    voicemail:bulk:{ID}:failures   list   JSON {line, account, send, email, reason}
    voicemail:bulk:{ID}:rate       hash   epoch second -> outcomes recorded in it
    voicemail:bulk:{ID}:seen       hash   account -> first line (duplicate check)

An outcome is recorded once per line (HSETNX on `done`), so a chunk that is
retried or redelivered neither double-counts nor re-sends a row already done.
The bulk is finished when `done` holds `total` lines: no chord needed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import constants as C
from ..core import lua

SUCCEEDED, FAILED, UNCHANGED, CANCELLED = "s", "f", "u", "c"
_COUNTER = {
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    UNCHANGED: "unchanged",
    CANCELLED: "cancelled",
}
RATE_WINDOW = 5  # seconds of history behind "current rate"


@dataclass(frozen=True, slots=True)
class BulkRow:
    line: int
    account: str
    send: bool
    email: str
    seq: int = 0  # the account's update order (coordination.ordering), given at submission

    def to_json(self) -> list[Any]:
        return [self.line, self.account, self.send, self.email, self.seq]

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> BulkRow:
        seq = int(raw[4]) if len(raw) > 4 else 0
        return cls(int(raw[0]), str(raw[1]), bool(raw[2]), str(raw[3]), seq)


@dataclass(frozen=True)
class RowError:
    """A row refused before it was queued: its line, why, and what it held."""

    line: int
    reason: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    line: int
    code: str  # SUCCEEDED, FAILED or UNCHANGED
    failure: dict[str, Any] | None = None

    @classmethod
    def failed(cls, line: int, reason: str, **row: Any) -> Outcome:
        return cls(line, FAILED, {"line": line, **row, "reason": reason})

    @classmethod
    def cancelled(cls, line: int, **row: Any) -> Outcome:
        return cls(line, CANCELLED, {"line": line, **row, "reason": "Cancelled"})


class Keys:
    def __init__(self, bulk_id: str) -> None:
        base = f"{C.BULK_KEY_PREFIX}{{{bulk_id}}}"
        self.meta = base
        self.done = base + ":done"
        self.failures = base + ":failures"
        self.cancelled = base + ":cancelled"  # rows never sent: kept for `bulk retry`
        self.rate = base + ":rate"
        self.seen = base + ":seen"
        self._base = base

    def chunk(self, number: int) -> str:
        return f"{self._base}:chunk:{number}"

    def record_keys(self) -> list[str]:
        return [self.meta, self.done, self.failures, self.rate, self.cancelled]


RECORD_SCRIPT = lua.load(
    __package__, "record_outcomes.lua", {name.upper(): code for code, name in _COUNTER.items()}
)


def record_args(outcomes: Iterable[Outcome], ttl: int, now: float | None = None) -> list[Any]:
    args: list[Any] = [repr(time.time() if now is None else now), ttl]
    for outcome in outcomes:
        failure = json.dumps(outcome.failure, ensure_ascii=False) if outcome.failure else ""
        args += [outcome.line, outcome.code, failure]
    return args


@dataclass(frozen=True)
class BulkStatus:
    bulk_id: str
    state: str  # UNKNOWN, SUBMITTING, RUNNING, DONE, DRY_RUN or CANCELLED
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    unchanged: int = 0
    cancelled: int = 0
    pending: int = 0
    would_send: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    rate: float = 0.0

    @property
    def done(self) -> bool:
        """Settled: nothing more will happen (a cancelled bulk once its requests in flight
        have finished)."""
        if self.state == "CANCELLED":
            return self.pending == 0
        return self.state in ("DONE", "DRY_RUN", "UNKNOWN")

    def summary(self) -> dict[str, Any]:
        out = {
            "bulk_id": self.bulk_id,
            "state": self.state,
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
        }
        if self.unchanged:
            out["unchanged"] = self.unchanged
        if self.cancelled:
            out["cancelled"] = self.cancelled
        if self.would_send is not None:
            out["would_send"] = self.would_send
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "unchanged": self.unchanged,
            "cancelled": self.cancelled,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "rate": round(self.rate, 1),
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _num(meta: dict[str, str], name: str) -> float | None:
    value = meta.get(name)
    return float(value) if value not in (None, "") else None


def status_from(
    bulk_id: str, meta: dict[str, str], rate_counts: dict[str, str], now: float
) -> BulkStatus:
    if not meta:
        return BulkStatus(bulk_id, "UNKNOWN")
    counts = {name: int(meta.get(name, 0)) for name in _COUNTER.values()}
    total_final = meta.get("total")
    total = int(total_final) if total_final is not None else int(meta.get("rows", 0))
    finished = _num(meta, "finished_at")
    if meta.get("dry_run") == "1":
        state = "DRY_RUN" if total_final is not None else "SUBMITTING"
    elif meta.get("cancelled_at"):
        state = "CANCELLED"
    elif total_final is None:
        state = "SUBMITTING"
    elif finished is not None:
        state = "DONE"
    else:
        state = "RUNNING"
    # Current rate: outcomes over the last full seconds (the running one is partial).
    second = int(now)
    recent = sum(int(rate_counts.get(str(s), 0)) for s in range(second - RATE_WINDOW, second))
    if state == "DONE" and finished is not None:
        started = _num(meta, "started_at") or _num(meta, "created_at") or finished
        recent_rate = (counts["succeeded"] + counts["unchanged"]) / max(finished - started, 1e-3)
    else:
        recent_rate = recent / RATE_WINDOW
    would = meta.get("would_send")
    return BulkStatus(
        bulk_id=bulk_id,
        state=state,
        total=total,
        pending=max(total - sum(counts.values()), 0) if state != "DRY_RUN" else 0,
        would_send=int(would) if would is not None else None,
        created_at=_num(meta, "created_at"),
        started_at=_num(meta, "started_at"),
        finished_at=finished,
        rate=recent_rate,
        **counts,
    )


def failure_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
