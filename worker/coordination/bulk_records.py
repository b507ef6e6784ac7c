"""A bulk job's state in Redis, shared by the producer that fills it and the workers that run it.

Keys, all under one hash tag so a Redis Cluster keeps them on one node. None expires
before the bulk settles, however long it is queued, runs or is paused; the step that
settles it (`record_outcomes.lua`) gives them all, chunks included, the TTL of the results
(`VOICEMAIL_RESULT_EXPIRES`):

    voicemail:bulk:{ID}            hash   created_at, started_at, finished_at, rows, total,
                                          chunks, would_send, succeeded, failed, unchanged,
                                          cancelled, stale, drifted, invalid, flags
                                          (dry_run, only_changed, revertible, verify,
                                          plan), reverts, reverted_by, applies,
                                          applied_by, notify, notify_queue, paused_at,
                                          cancelled_at, waking_until, scheduled_at,
                                          revert_after, revert_at (coordination.schedule)
    voicemail:bulk:{ID}:chunk:N    string JSON rows [[line, account, send, email, seq], ...]
    voicemail:bulk:{ID}:done       bitmap one bit per line, set once its outcome is counted
                                          (the counts are in the meta hash: `recorded`,
                                          `succeeded`, ...)
    voicemail:bulk:{ID}:failures   list   JSON {line, account, send, email, reason}, and
                                          `"invalid": true` for a row refused at submission
    voicemail:bulk:{ID}:cancelled  list   the same, for rows a cancel kept from being sent
    voicemail:bulk:{ID}:rate       hash   epoch second -> outcomes recorded in it
    voicemail:bulk:{ID}:seen       hash   account -> first line (duplicate check, while
                                          the producer streams)
    voicemail:bulk:{ID}:before     hash   line -> JSON [account, send, email, new send,
                                          new email]: what a revertible bulk found, written
                                          before its PATCH; for a plan, what it read (three
                                          items [account, send, email] when the account
                                          already holds the file's values)
    voicemail:bulk:{ID}:lines      hash   chunk number -> its lines, "2-999,1001-1002": a
                                          chunk whose data is gone records those still
                                          unrecorded as failed, `ChunkLost: ...`
    voicemail:bulk:{ID}:parked     hash   chunk number -> retries, chunks waiting out a pause
    voicemail:bulk:{ID}:waking     hash   chunk number -> "retries:stamp", parked chunks a
                                          resume or cancel is queueing (bulk_control)

An outcome is recorded once per line (SETBIT on `done`), so a chunk that is
retried or redelivered neither double-counts nor re-sends a row already done.
The bulk is finished when `recorded` reaches `total`: no chord needed. Once done, a
bulk keeps about one bit per row, plus the detail of its failed and cancelled rows
(and, for a revertible bulk, what its accounts held before); its chunks and its
duplicate check (`seen`) are deleted as soon as they have served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..core import keys, lua
from ..core.logs import redact

SUCCEEDED, FAILED, UNCHANGED, CANCELLED = "s", "f", "u", "c"
COUNTERS: Mapping[str, str] = MappingProxyType(
    {SUCCEEDED: "succeeded", FAILED: "failed", UNCHANGED: "unchanged", CANCELLED: "cancelled"}
)
# Failed rows of a kind that has a count of its own too (`stale`, `drifted`, `invalid`
# in the meta hash): recorded, and counted, as failed.
STALE, DRIFTED, INVALID = "t", "d", "i"
FAILED_KINDS: Mapping[str, str] = MappingProxyType(
    {STALE: "stale", DRIFTED: "drifted", INVALID: "invalid"}
)
RATE_WINDOW = 5  # seconds of history behind "current rate"


def counter_of(code: str) -> str:
    """The counter an outcome code adds to: a failed row of any kind is `failed`."""
    return COUNTERS.get(code) or COUNTERS[FAILED]


@dataclass(frozen=True, slots=True)
class BulkRow:
    line: int
    account: str
    send: bool
    email: str
    seq: int = 0  # the account's update order (coordination.ordering), given at submission
    # A revert's row: what the reverted bulk set, which the account must still hold.
    expect: tuple[bool, str] | None = None

    def to_json(self) -> list[Any]:
        out = [self.line, self.account, self.send, self.email, self.seq]
        if self.expect is not None:
            out += list(self.expect)
        return out

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> BulkRow:
        seq = int(raw[4]) if len(raw) > 4 else 0
        expect = (bool(raw[5]), str(raw[6])) if len(raw) > 6 else None
        return cls(int(raw[0]), str(raw[1]), bool(raw[2]), str(raw[3]), seq, expect)


@dataclass(frozen=True)
class RowError:
    """A row refused before it was queued: its line, why, and what it held."""

    line: int
    reason: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    line: int
    code: str  # SUCCEEDED, FAILED, UNCHANGED or CANCELLED
    failure: dict[str, Any] | None = None

    @classmethod
    def failed(cls, line: int, reason: str, kind: str = FAILED, **row: Any) -> Outcome:
        """`kind`: FAILED, or one of FAILED_KINDS (counted apart as well)."""
        return cls(line, kind, {"line": line, **row, "reason": reason})

    @classmethod
    def invalid(cls, line: int, reason: str, **row: Any) -> Outcome:
        """A row refused at submission: a bad line, a bad email, a duplicate, an account
        not in the credential store."""
        return cls(line, INVALID, {"line": line, **row, "reason": reason, "invalid": True})

    @classmethod
    def cancelled(cls, line: int, **row: Any) -> Outcome:
        return cls(line, CANCELLED, {"line": line, **row, "reason": "Cancelled"})


async def recorded_lines(redis: Any, keys: Keys, lines: Sequence[int]) -> list[bool]:
    """Which of `lines` already have an outcome, in one round trip (async client)."""
    if not lines:
        return []
    fields = redis.bitfield(keys.done)
    for line in lines:
        fields.get("u1", line)
    return [bool(bit) for bit in await fields.execute()]


Keys = keys.BulkKeys  # the layout above


# Bulks that settled with a notification still to send (worker.queue.notify).
NOTIFY_OUTBOX = keys.NOTIFY_OUTBOX

RECORD_SCRIPT = lua.load(
    __package__,
    "record_outcomes.lua",
    {name.upper(): code for code, name in {**COUNTERS, **FAILED_KINDS}.items()}
    | {"OUTBOX": NOTIFY_OUTBOX, "SCHEDULE": keys.SCHEDULE, "WAKING": keys.WAKING},
    include=["waves.lua"],
)


def record_args(outcomes: Iterable[Outcome], ttl: int, now: float | None = None) -> list[Any]:
    args: list[Any] = [repr(time.time() if now is None else now), ttl]
    for outcome in outcomes:
        failure = json.dumps(outcome.failure, ensure_ascii=False) if outcome.failure else ""
        args += [outcome.line, outcome.code, failure]
    return args


def line_runs(lines: Iterable[int]) -> str:
    """A chunk's lines as runs of consecutive numbers, "2-999,1001-1002" (a row refused at
    submission leaves a gap): what a lost chunk's rows are recorded by."""
    runs: list[list[int]] = []
    for line in lines:
        if runs and line == runs[-1][1] + 1:
            runs[-1][1] = line
        else:
            runs.append([line, line])
    return ",".join(f"{a}-{b}" for a, b in runs)


def lines_of(runs: str) -> list[int]:
    """The lines `line_runs` wrote down."""
    out: list[int] = []
    for run in filter(None, runs.split(",")):
        first, _, last = run.partition("-")
        out.extend(range(int(first), int(last) + 1))
    return out


def failure_reason(exc: BaseException) -> str:
    """A row's reason, as `bulk failures` shows it: never a bearer token, whatever the
    exception's text quoted."""
    return f"{type(exc).__name__}: {redact(str(exc))}"
