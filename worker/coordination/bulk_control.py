"""Pause, resume and cancel a bulk, and park the chunks of a paused one.

A chunk that finds its bulk paused is parked: its number (and the retries it has spent)
goes to the bulk's `parked` hash and the task ends, holding no pool thread, no engine slot
and no broker message. `resume` (or `cancel`) moves the parked chunks to the bulk's
`waking` hash in the same Lua step that clears the pause, and hands them to the caller,
which queues each one and only then drops its entry (`queue_woken`). A caller killed
between the two (Ctrl-C, a kill, a Redis blip) loses nothing: the bulk's id is in the
`WAKING` set, and once the caller's lease (`WAKE_LEASE`) lapses any worker's
once-a-second tick queues what is left (`wake_orphans`). Both sides of the park run in
Lua against the same fields, so a chunk is never parked after the resume that should
have woken it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core import lua
from ..core.connections import text
from ..core.keys import NOTIFY_OUTBOX, WAKING
from .bulk_records import Keys

CONTROL_SCRIPT = lua.load(
    __package__, "control.lua", {"WAKING": WAKING, "OUTBOX": NOTIFY_OUTBOX}, include=["waves.lua"]
)
PARK_SCRIPT = lua.load(__package__, "park.lua")
WAKE_TAKE_SCRIPT = lua.load(__package__, "wake_take.lua", {"WAKING": WAKING})
UNWAKE_SCRIPT = lua.load(__package__, "unwake.lua")

# Seconds a resumer has to queue the chunks it was handed before a worker's sweep takes
# over; renewed every `_RENEW_EVERY` chunks it queues.
WAKE_LEASE = 10.0
_RENEW_EVERY = 100

Op = Literal["pause", "resume", "cancel", "start"]  # start: a scheduled bulk (schedule)
# send(bulk_id, number, retries): queue a chunk task (worker.queue.app.send_chunk).
Send = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Change:
    known: bool
    changed: bool
    # Chunks to queue again: number -> its `waking` entry, "retries:stamp".
    parked: dict[int, str] = field(default_factory=dict)


def control(client: Any, bulk_id: str, op: Op, lease: float = WAKE_LEASE) -> Change:
    keys = Keys(bulk_id)
    answer = client.register_script(CONTROL_SCRIPT)(
        keys=keys.all(), args=[op, repr(time.time()), lease, keys.chunk_prefix, bulk_id]
    )
    code, rest = int(answer[0]), answer[1:]
    return Change(known=code >= 0, changed=code == 1, parked=_pairs(rest))


def _pairs(flat: list[Any]) -> dict[int, str]:
    return {int(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def retries_of(entry: str) -> int:
    return int(entry.split(":", 1)[0])


def queue_woken(client: Any, bulk_id: str, chunks: dict[int, str], send: Send) -> None:
    """Queue the chunks a resume, a cancel or a sweep handed out, each with the retries
    it had spent, dropping each one's `waking` entry only once it is queued.

    Interrupted anywhere, the entries not yet dropped stay for a worker's sweep, which
    queues them again, so a chunk may be queued twice: harmless, since each row is
    recorded at most once by line and each account's claim fences its PATCH, so the second
    delivery skips what the first did (tests/test_bulk_production.py)."""
    keys = Keys(bulk_id)
    unwake = client.register_script(UNWAKE_SCRIPT)
    for count, (number, entry) in enumerate(sorted(chunks.items()), start=1):
        send(bulk_id, number, retries_of(entry))
        unwake(keys=[keys.waking], args=[number, entry])
        if count % _RENEW_EVERY == 0:  # still at it: keep the sweep off
            client.hset(keys.meta, "waking_until", repr(time.time() + WAKE_LEASE))


def wake_orphans(client: Any, send: Send, lease: float = WAKE_LEASE) -> int:
    """Queue the chunks of resumed (or cancelled) bulks whose resumer died before it
    queued them all; returns how many. Cheap when there are none: one SMEMBERS of a set
    that a resume empties within a second."""
    script = client.register_script(WAKE_TAKE_SCRIPT)
    sent = 0
    for raw in client.smembers(WAKING):
        bulk_id = text(raw)
        keys = Keys(bulk_id)
        chunks = _pairs(script(keys=[keys.meta, keys.waking], args=[time.time(), lease, bulk_id]))
        if chunks:
            queue_woken(client, bulk_id, chunks, send)
            sent += len(chunks)
    return sent


def park(client: Any, bulk_id: str, number: int, retries: int) -> bool:
    """Park chunk `number` if its bulk is paused; False means: run it now."""
    keys = Keys(bulk_id)
    script = client.register_script(PARK_SCRIPT)
    return bool(script(keys=[keys.meta, keys.parked, keys.chunk(number)], args=[number, retries]))
