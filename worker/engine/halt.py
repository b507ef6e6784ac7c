"""A running chunk's view of its bulk's cancel and pause: `Halt`, set within
`CONTROL_POLL` seconds of either on every worker (`watch_control`)."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from ..coordination.bulk_records import Keys
from .engine_context import EngineContext

CONTROL_POLL = 0.5  # seconds between looks at the bulk's cancel and pause flags


class Halt:
    """Set within half a second of a cancel or a pause of the bulk, on every worker."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.cancelled = False

    def is_set(self) -> bool:
        return self.event.is_set()

    def seen(self, cancelled: bool, paused: bool) -> None:
        self.cancelled = self.cancelled or cancelled
        if cancelled or paused:
            self.event.set()


async def watch_control(ctx: EngineContext, keys: Keys, halt: Halt) -> None:
    while not halt.cancelled:
        await asyncio.sleep(CONTROL_POLL)
        try:
            cancelled_at, paused_at = await ctx.redis.hmget(
                keys.meta, ["cancelled_at", "paused_at"]
            )
        except RedisError:  # Redis away: the health watcher holds every request back
            continue
        halt.seen(cancelled_at is not None, paused_at is not None)
