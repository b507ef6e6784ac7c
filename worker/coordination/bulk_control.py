"""Pause, resume and cancel a bulk, and park the chunks of a paused one.

A chunk that finds its bulk paused is parked: its number (and the retries it has spent)
goes to the bulk's `parked` hash and the task ends, holding no pool thread, no engine slot
and no broker message. `resume` (or `cancel`) takes the parked chunks out in the same
Lua step that clears the pause, and the caller queues them again. Both sides run in Lua
against the same fields, so a chunk is never parked after the resume that should have
woken it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core import lua
from .bulk_records import Keys

CONTROL_SCRIPT = lua.load(__package__, "control.lua")
PARK_SCRIPT = lua.load(__package__, "park.lua")

Op = Literal["pause", "resume", "cancel"]


@dataclass(frozen=True)
class Change:
    known: bool
    changed: bool
    parked: dict[int, int] = field(default_factory=dict)  # chunk number -> retries spent


def control(client: Any, bulk_id: str, op: Op, ttl: int) -> Change:
    keys = Keys(bulk_id)
    answer = client.register_script(CONTROL_SCRIPT)(
        keys=keys.all(), args=[op, repr(time.time()), ttl, keys.chunk_prefix]
    )
    code, rest = int(answer[0]), answer[1:]
    parked = {int(rest[i]): int(rest[i + 1]) for i in range(0, len(rest), 2)}
    return Change(known=code >= 0, changed=code == 1, parked=parked)


def park(client: Any, bulk_id: str, number: int, retries: int) -> bool:
    """Park chunk `number` if its bulk is paused; False means: run it now."""
    keys = Keys(bulk_id)
    script = client.register_script(PARK_SCRIPT)
    return bool(script(keys=[keys.meta, keys.parked, keys.chunk(number)], args=[number, retries]))
