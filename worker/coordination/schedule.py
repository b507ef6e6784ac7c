"""Timed work on bulks: a start at `--at WHEN`, a revert `--revert-after DURATION` after
the bulk settled. Not Celery countdowns: over Redis, kombu redelivers a message whose
countdown outlasts the visibility timeout (kombu#337), and a worker holds it in memory.

Each piece of timed work is one entry of the `SCHEDULE` zset, scored by when it is due
(ms on Redis's clock, so hosts' clocks never matter): `start:<bulk id>` or
`revert:<bulk id>`. Any worker's once-a-second tick (`run_due`) takes the entries that
are due, leasing each for a while (`schedule_take.lua`), does the work, and only then
drops the entry: a worker killed in between leaves it for the next tick, of any worker,
once the lease lapses. The entries, and the bulks they name, live in Redis, so they
outlast any worker, and a Redis restart with AOF.

- A scheduled bulk is a paused one with `scheduled_at` in its record: its chunks are
  parked as they are submitted (`park.lua`), so nothing of it is queued, let alone sent.
  Its start is a resume (`control.lua`, op `start`): the parked chunks move to `waking`
  and are queued from there, the loss-free path of `bulk_control`. A cancel, or a
  resume by hand, ends the wait as well; the entry is then dropped as a no-op.
- A revert is scheduled by the step that settles the bulk (`record_outcomes.lua`), which
  stamps `revert_at` and adds the entry. The tick hands it to a task
  (`voicemail.timed_revert`), since submitting a revert streams every row it undoes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..core import lua
from ..core.connections import text
from ..core.keys import SCHEDULE
from . import bulk_control
from .bulk_records import Keys

logger = logging.getLogger(__name__)

TAKE_SCRIPT = lua.load(__package__, "schedule_take.lua")
START, REVERT = "start:", "revert:"
# How long a taken entry is left alone: a start queues its chunks within it (the
# waking path covers the rest); a revert's task finishes or lets another try.
START_LEASE_MS = 10_000
REVERT_LEASE_MS = 60_000
_TAKE_LIMIT = 100  # per tick: a backlog of due entries is worked off a hundred a second

# revert(bulk_id): queue the task that submits a bulk's timed revert (worker_signals).
Revert = Callable[[str], None]


def redis_now(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def schedule_start(client: Any, bulk_id: str, at: float) -> None:
    """Enter the start of bulk `bulk_id` (paused, with `scheduled_at`) for epoch `at`."""
    client.zadd(SCHEDULE, {START + bulk_id: round(at * 1000)})


def run_due(client: Any, send: bulk_control.Send, revert: Revert) -> int:
    """Start the scheduled bulks that are due and queue the reverts that are; returns how
    many entries were taken. One EVALSHA when nothing is due."""
    take = client.register_script(TAKE_SCRIPT)
    taken = [text(e) for e in take(keys=[SCHEDULE], args=[_TAKE_LIMIT, START_LEASE_MS])]
    for entry in taken:
        try:
            if entry.startswith(START):
                start(client, entry.removeprefix(START), send)
                client.zrem(SCHEDULE, entry)
            elif entry.startswith(REVERT):
                # The task drops the entry once the revert is submitted (`revert_done`).
                client.zadd(SCHEDULE, {entry: _ms(client) + REVERT_LEASE_MS}, xx=True)
                revert(entry.removeprefix(REVERT))
            else:
                client.zrem(SCHEDULE, entry)  # not ours to know: never due again
        except Exception:  # leased: the next tick after the lease tries again
            logger.warning("schedule: could not run %s", entry, exc_info=True)
    return len(taken)


def _ms(client: Any) -> int:
    return round(redis_now(client) * 1000)


def start(client: Any, bulk_id: str, send: bulk_control.Send) -> None:
    """Start a scheduled bulk through the resume's loss-free path: nothing happens to a
    bulk that is no longer waiting (started by hand, cancelled, or gone)."""
    change = bulk_control.control(client, bulk_id, "start")
    bulk_control.queue_woken(client, bulk_id, change.parked, send)
    if change.changed:
        logger.info("bulk %s: scheduled start, %d chunks queued", bulk_id, len(change.parked))


def revert_done(client: Any, bulk_id: str) -> None:
    """The timed revert of `bulk_id` was submitted (or is not to be): forget its entry."""
    client.zrem(SCHEDULE, REVERT + bulk_id)


def revert_pending(client: Any, bulk_id: str) -> bool:
    """Whether `bulk_id` still has a timed revert to run (dropped by `cancel_revert`)."""
    return client.zscore(SCHEDULE, REVERT + bulk_id) is not None


def cancel_revert(client: Any, bulk_id: str) -> bool:
    """Drop the timed revert of `bulk_id`, scheduled or still to be (the bulk has not
    settled): True if there was one. The bulk itself is left as it is."""
    meta = Keys(bulk_id).meta
    with client.pipeline(transaction=True) as pipe:
        pipe.zrem(SCHEDULE, REVERT + bulk_id)
        pipe.hdel(meta, "revert_after", "revert_at")
        dropped, fields = pipe.execute()
    return bool(dropped or fields)
