"""Change windows and timed undo, the producer side: `at=` and `revert_after=` of
`submit_bulk` and `apply_plan` (`schedule_fields`, `enter_schedule`), and
`cancel_revert`. The worker side, which starts and reverts on time, is
`worker.coordination.schedule`; the timed revert's task is `tasks.timed`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from redis.typing import EncodableT, FieldT

from worker.coordination import schedule as _schedule
from worker.coordination.rollout import parse_duration, parse_when
from worker.core.errors import InputError

from ..connection import redis_client, redis_errors

When = str | float | datetime
Duration = str | float


def schedule_fields(
    at: When | None, revert_after: Duration | None, *, dry_run: bool = False
) -> dict[FieldT, EncodableT]:
    """The bulk record's fields for `at` (ISO 8601 with an offset, `+30m`, an aware
    datetime or an epoch time) and `revert_after` (`20s`, `2h`, or seconds), checked.
    A scheduled bulk is recorded paused, with `scheduled_at`: its chunks wait, parked."""
    fields: dict[FieldT, EncodableT] = {}
    if at is not None:
        if dry_run:
            raise InputError("--at with --dry-run: a dry run sends nothing; drop one of them")
        with redis_errors():
            now = _schedule.redis_now(redis_client())  # the clock the workers go by
        when = _when(at, now)
        if when <= now:
            raise InputError(f"--at {at!s}: that is in the past ({_iso(now)} now, by Redis)")
        fields.update(scheduled_at=repr(when), paused_at=repr(now))
    if revert_after is not None:
        seconds = _seconds(revert_after)
        fields.update(revert_after=repr(seconds), revertible=1)
    return fields


def _when(at: When, now: float) -> float:
    if isinstance(at, str):
        return parse_when(at, now)
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InputError(f"--at {at.isoformat()}: the time needs a timezone")
        return at.timestamp()
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return float(at)
    raise InputError(f"--at {at!r}: give ISO 8601 with an offset, +30m, or an epoch time")


def _seconds(duration: Duration) -> float:
    if isinstance(duration, str):
        return parse_duration(duration)
    if (
        isinstance(duration, int | float)
        and not isinstance(duration, bool)
        and math.isfinite(duration)
        and duration > 0
    ):
        return float(duration)
    raise InputError(f"--revert-after {duration!r}: give a duration like 30m, or seconds")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def enter_schedule(client: Any, bulk_id: str, fields: dict[FieldT, EncodableT]) -> None:
    """Once the bulk's record holds `fields`: enter its start, if it has a time."""
    at = fields.get("scheduled_at")
    if at is not None:
        _schedule.schedule_start(client, bulk_id, float(str(at)))


def cancel_revert(bulk_id: str) -> bool:
    """Drop the timed revert of `bulk_id` (`revert_after`), whether it is scheduled yet
    or the bulk has still to settle; the bulk itself goes on. False if it had none. A
    revert that started already is a bulk of its own (`reverted_by`): cancel that."""
    with redis_errors():
        return _schedule.cancel_revert(redis_client(), bulk_id)
