"""What a chunk run reports (`ChunkReport`) and the buffered writer of its outcomes
(`Recorder`).

A failover to a replica that lagged loses the last writes before it, outcomes included:
the chunk, which thinks them recorded, would end, and its bulk would never settle. So
the recorder keeps what it wrote, and a chunk that saw Redis go away checks at its end
that Redis still holds every outcome it wrote (one round trip), and writes again those
it does not, with the applied numbers of their updates (`restore_lost`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from ..coordination.bulk_records import Keys, Outcome, counter_of, record_args, recorded_lines
from ..coordination.journal_entry import JournalEntry
from ..coordination.journal_redis import AsyncRedisJournal, queue_writes
from ..coordination.ordering import Release, Settled
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
    """Buffers outcomes, account releases and journal entries; writes each batch with two
    Lua calls, the journal's writes pipelined with the outcomes' (one round trip)."""

    ctx: EngineContext
    keys: Keys
    owner: str
    health: RedisHealth
    buffer: list[Outcome] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    # (account, ref) of rows whose attempt was ambiguous: read back later (readback.py).
    ambiguous: list[tuple[str, str]] = field(default_factory=list)
    # The journal's entries of the buffered outcomes (worker.coordination.journal_rows).
    entries: list[JournalEntry] = field(default_factory=list)
    last: float = field(default_factory=time.monotonic)
    # A bulk with --max-failures (coordination.waves): a failed row is recorded at once,
    # no request of the chunk starts while one is being recorded (`wait_recorded`), and
    # `on_stop` is called when its step paused the bulk: the chunk stops before its next
    # request rather than at its next look at the bulk's flags.
    eager: bool = False
    on_stop: Callable[[], None] | None = None
    recording: int = 0  # failed rows of a guarded bulk being recorded
    recorded: asyncio.Event = field(default_factory=asyncio.Event)
    # What this run wrote: outcomes, and the releases of applied updates (restore_lost).
    written: list[Outcome] = field(default_factory=list)
    applied: list[Release] = field(default_factory=list)

    async def add(
        self, outcome: Outcome, release: Release | None, entry: JournalEntry | None = None
    ) -> None:
        self.buffer.append(outcome)
        if release is not None:
            self.releases.append(release)
        if entry is not None:
            self.entries.append(entry)
        if self.eager and counter_of(outcome.code) == "failed":
            await self.flush_failure()
        elif len(self.buffer) >= _FLUSH_ROWS or time.monotonic() - self.last > _FLUSH_SECONDS:
            await self.flush()

    def guard(self, on_stop: Callable[[], None]) -> None:
        """For a bulk with --max-failures (coordination.waves): see `eager`."""
        self.eager, self.on_stop = True, on_stop

    async def flush_failure(self) -> None:
        self.recording += 1
        self.recorded.clear()
        try:
            await self.flush()
        finally:
            self.recording -= 1
            if not self.recording:
                self.recorded.set()

    async def wait_recorded(self) -> None:
        """Until no failed row of a guarded bulk waits to be recorded: the step that
        records it may stop the bulk."""
        while self.recording:
            await self.recorded.wait()

    async def release_only(self, release: Release) -> None:
        self.releases.append(release)

    async def flush(self) -> None:
        """Write what is buffered. With Redis away, keep it all and try again once Redis
        answers (`health`), so no finished row is lost or sent again."""
        # Taken whole before the first await: other lanes go on adding while it writes.
        batch, self.buffer, self.last = self.buffer, [], time.monotonic()
        releases, self.releases = self.releases, []
        ambiguous, self.ambiguous = self.ambiguous, []
        entries, self.entries = self.entries, []
        while True:
            try:
                await self._write(batch, releases, ambiguous, entries)
                return
            except (RedisError, OSError) as exc:
                logger.warning("bulk outcomes kept in memory until Redis answers: %s", exc)
                self.health.down()
                await self.health.wait_up()

    async def restore_lost(self) -> int:
        """Write again the outcomes this run wrote that Redis no longer holds (a failover
        lost them), with the applied numbers of this run's updates; how many."""
        held = await recorded_lines(self.ctx.redis, self.keys, [o.line for o in self.written])
        lost = [o for o, kept in zip(self.written, held, strict=True) if not kept]
        if lost:
            logger.warning(
                "bulk %s: Redis lost %d recorded outcomes (a failover?): written again",
                self.keys.bulk_id,
                len(lost),
            )
            self.buffer += lost
            self.releases += self.applied
            await self.flush()
        return len(lost)

    async def _write(
        self,
        batch: list[Outcome],
        releases: list[Release],
        ambiguous: list[tuple[str, str]],
        entries: list[JournalEntry],
    ) -> None:
        if ambiguous:
            # Before the releases: an applied update then finds its read-back pending.
            await self.ctx.readback.schedule_many(ambiguous)
            ambiguous.clear()
        if releases:
            # Applied numbers first: once an outcome is recorded, a redelivery must see it.
            await self.ctx.ordering.release(self.owner, releases)
            self.applied += [r for r in releases if Release(*r).settled == Settled.APPLIED]
            releases.clear()
        if batch or entries:
            answer = await self._record(batch, entries)
            self.written += batch
            batch.clear()
            entries.clear()
            if answer is not None and len(answer) > 2 and int(answer[2]) and self.on_stop:
                self.on_stop()  # this step paused the bulk (--max-failures)
        try:
            await aflush(self.ctx.redis, self.ctx.stats)
        except RedisError:  # counters only: never worth holding outcomes back
            logger.debug("could not flush request statistics", exc_info=True)

    async def _record(self, batch: list[Outcome], entries: list[JournalEntry]) -> Any:
        """The outcomes, and their journal entries in the same round trip when the journal
        is in this Redis (a ZADD writes an entry once, however often it is retried).
        Returns the record step's answer (None without outcomes)."""
        keys = self.keys.record_keys()
        args = record_args(batch, self.ctx.settings.result_expires) if batch else None
        journal = self.ctx.journal
        if not isinstance(journal, AsyncRedisJournal) or not entries:
            await self._journal_elsewhere(entries)
            return None if args is None else await self.ctx.record(keys=keys, args=args)
        pipe = self.ctx.redis.pipeline(transaction=False)
        if args is not None:
            pipe.evalsha(self.ctx.record.sha, len(keys), *keys, *args)
        queue_writes(pipe, entries, journal.days)
        answers = await pipe.execute(raise_on_error=False)
        # A restarted Redis lost the scripts: each again on its own, which loads it (each
        # writes what it wrote before once, not twice).
        if isinstance(answers[-1], NoScriptError):
            answers[-1] = await journal.write_many(entries)
        if args is not None and isinstance(answers[0], NoScriptError):
            answers[0] = await self.ctx.record(keys=keys, args=args)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers[0] if args is not None else None

    async def _journal_elsewhere(self, entries: list[JournalEntry]) -> None:
        """PostgreSQL (or off): written first, and never holding the outcomes back."""
        if not entries:
            return
        try:
            await self.ctx.journal.write_many(entries)
        except Exception as exc:  # PostgreSQL away: the rows' outcomes matter more
            logger.warning("%d journal entries not written: %s", len(entries), exc)
        entries.clear()
