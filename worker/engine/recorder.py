"""What a chunk run reports (`ChunkReport`) and the buffered writer of its outcomes
(`Recorder`)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ..coordination.bulk_records import Keys, Outcome, counter_of, record_args
from ..coordination.ordering import Release
from ..coordination.stats import aflush
from .redis_health import RedisHealth

if TYPE_CHECKING:
    from .engine_context import EngineContext

logger = logging.getLogger(__name__)

_FLUSH_ROWS = 200
_FLUSH_SECONDS = 0.25


@dataclass
class ChunkReport:
    rows: int = 0
    skipped: int = 0  # already recorded by an earlier run
    succeeded: int = 0
    failed: int = 0
    unchanged: int = 0
    cancelled: int = 0
    paused: int = 0  # held back by a pause: left for the run after the resume
    transient: int = 0  # left for the next run
    locked: int = 0  # of those, waiting for another update's lock (not API trouble)
    retry_after: float | None = None
    missing: bool = False  # its data was gone: finished before, or lost (then `lost`)
    lost: int = 0  # rows recorded as failed because their chunk's data was gone
    seconds: float = 0.0

    def wait_for_lock(self) -> None:
        """Another update holds the row's account, or a reaped owner's request may still
        land: the next run takes the row; never failed for it, no re-queue budget spent
        (`tasks/chunk.py`), as a single job's wait."""
        self.transient += 1
        self.locked += 1

    def count(self, code: str) -> None:
        name = counter_of(code)
        setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recorder:
    """Buffers outcomes and account releases; writes each batch with two Lua calls."""

    ctx: EngineContext
    keys: Keys
    owner: str
    health: RedisHealth
    buffer: list[Outcome] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    # (account, ref) of rows whose attempt was ambiguous: read back later (readback.py).
    ambiguous: list[tuple[str, str]] = field(default_factory=list)
    last: float = field(default_factory=time.monotonic)

    async def add(self, outcome: Outcome, release: Release | None) -> None:
        self.buffer.append(outcome)
        if release is not None:
            self.releases.append(release)
        if len(self.buffer) >= _FLUSH_ROWS or time.monotonic() - self.last > _FLUSH_SECONDS:
            await self.flush()

    async def release_only(self, release: Release) -> None:
        self.releases.append(release)

    async def flush(self) -> None:
        """Write what is buffered. With Redis away, keep it all and try again once Redis
        answers (`health`), so no finished row is lost or sent again."""
        # Taken whole before the first await: other lanes go on adding while it writes.
        batch, self.buffer, self.last = self.buffer, [], time.monotonic()
        releases, self.releases = self.releases, []
        ambiguous, self.ambiguous = self.ambiguous, []
        while True:
            try:
                await self._write(batch, releases, ambiguous)
                return
            except (RedisError, OSError) as exc:
                logger.warning("bulk outcomes kept in memory until Redis answers: %s", exc)
                self.health.down()
                await self.health.wait_up()

    async def _write(
        self, batch: list[Outcome], releases: list[Release], ambiguous: list[tuple[str, str]]
    ) -> None:
        if ambiguous:
            # Before the releases: an applied update then finds its read-back pending.
            await self.ctx.readback.schedule_many(ambiguous)
            ambiguous.clear()
        if releases:
            # Applied numbers first: once an outcome is recorded, a redelivery must see it.
            await self.ctx.ordering.release(self.owner, releases)
            releases.clear()
        if batch:
            ttl = self.ctx.settings.result_expires
            await self.ctx.record(keys=self.keys.record_keys(), args=record_args(batch, ttl))
            batch.clear()
        try:
            await aflush(self.ctx.redis, self.ctx.stats)
        except RedisError:  # counters only: never worth holding outcomes back
            logger.debug("could not flush request statistics", exc_info=True)
