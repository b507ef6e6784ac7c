"""A running chunk's view of its bulk's cancel and pause, and of its own worker being
found dead: `Halt`, set within `CONTROL_POLL` seconds of any of them (`watch_control`)."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from ..coordination.bulk_records import Keys
from ..core import keys as key_names
from .engine_context import EngineContext
from .redis_health import RedisHealth

logger = logging.getLogger(__name__)

CONTROL_POLL = 0.5  # seconds between looks at the bulk's cancel and pause flags


class Halt:
    """Set within half a second of a cancel or a pause of the bulk, on every worker, and
    of the chunk's own worker instance being marked reaped."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.cancelled = False
        self.reaped = False

    def is_set(self) -> bool:
        return self.event.is_set()

    def seen(self, cancelled: bool, paused: bool, reaped: bool = False) -> None:
        self.cancelled = self.cancelled or cancelled
        self.reaped = self.reaped or reaped
        if cancelled or paused or reaped:
            self.event.set()


def owner_instance(lock_owner: str) -> str:
    """The worker instance of a lock owner, `<instance>:<token>`."""
    return lock_owner.partition(":")[0]


async def watch_control(
    ctx: EngineContext,
    keys: Keys,
    halt: Halt,
    lock_owner: str | None = None,
    health: RedisHealth | None = None,
) -> None:
    """Polls the bulk's flags and, with `lock_owner`, its instance's reaped mark: a worker
    found dead had this delivery given back and its claims are another's to make, so it
    sends nothing more on them; with `health`, Redis's epoch key: a Redis that lost its
    data lost the claims too, so each is checked again (in the same round trip: nothing
    added per row)."""
    mark = key_names.reaped(owner_instance(lock_owner)) if lock_owner else None
    while not halt.cancelled:
        await asyncio.sleep(CONTROL_POLL)
        try:
            async with ctx.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.meta, ["cancelled_at", "paused_at"])
                pipe.exists(mark or keys.meta)
                pipe.get(key_names.EPOCH)
                (cancelled_at, paused_at), reaped, epoch = await pipe.execute()
        except RedisError:  # Redis away: the health watcher holds every request back
            continue
        reaped = bool(reaped) and mark is not None
        if reaped and not halt.reaped:
            logger.warning("this worker was found dead: its chunk sends nothing more")
        if health is not None and health.saw_data_epoch(epoch):
            logger.info("claims taken before Redis lost its data are taken again first")
        halt.seen(cancelled_at is not None, paused_at is not None, reaped)
