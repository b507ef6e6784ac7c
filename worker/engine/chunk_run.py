"""One chunk of a bulk, run on asyncio: every row claimed, sent and recorded.

`ChunkRun.run` reads top to bottom: load the chunk, skip the rows already recorded,
settle it at once when its bulk is cancelled or paused, claim every row's account in one
call, then send the rows in `bulk_in_flight` lanes, recording each outcome and releasing
its account as it settles.

Per row the single-job semantics hold: short tenacity retries, permanent errors
recorded at once, a 429 waits its Retry-After without spending an attempt. Rows still
failing transiently are left unrecorded and the chunk task re-queues itself; on its last
run they are recorded as failed (a row waiting for a lock never is). Any other exception
fails its row alone, with its reason; the other rows go on.

A cancel or a pause (seen within `CONTROL_POLL` seconds, and before every request)
stops new requests; those in flight finish. A cancel records the rows not sent as
`cancelled`; a pause leaves them unrecorded, for the chunk to run again on resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..coordination.bulk_records import (
    BulkRow,
    Keys,
    Outcome,
    record_args,
    recorded_lines,
)
from ..coordination.journal_rows import JOURNAL_FIELDS, BulkJournal
from ..coordination.ordering import LOCK_TTL, Release, Settled, Verdict, settled_by
from ..core.errors import (
    AccountNotFound,
    Conflict,
    CredentialError,
    InputError,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..core.keys import ACCOUNTS, EPOCH
from .before_notes import BeforeNotes
from .claim_guard import SENDABLE, ClaimGuard, ClaimLost, Halted, Reread
from .engine_context import EngineContext
from .halt import Halt, watch_control
from .lost import record_lost
from .outcomes import cancelled, failed, failed_unexpectedly, settled_elsewhere
from .recorder import ChunkReport, Recorder
from .redis_health import RedisHealth
from .row_send import MODE_FIELDS, Mode, apply_row, row_deadline

__all__ = ["ChunkRun", "process_chunk", "row_deadline"]

logger = logging.getLogger(__name__)

# Errors that settle a row for good, whatever run this is.
_PERMANENT = (PermanentError, InputError, AccountNotFound, CredentialError, Conflict)


async def process_chunk(
    ctx: EngineContext, bulk_id: str, number: int, *, final: bool, lock_owner: str
) -> ChunkReport:
    """Run chunk `number` of `bulk_id` as this delivery's `lock_owner`."""
    return await ChunkRun(ctx, bulk_id, number, final=final, lock_owner=lock_owner).run()


class ChunkRun:
    def __init__(
        self, ctx: EngineContext, bulk_id: str, number: int, *, final: bool, lock_owner: str
    ) -> None:
        self.ctx = ctx
        self.number = number
        self.final = final
        self.lock_owner = lock_owner
        self.keys = Keys(bulk_id)
        self.report = ChunkReport()
        self.halt = Halt()
        self.health = RedisHealth(ctx.redis)
        self.recorder = Recorder(ctx, self.keys, lock_owner, self.health)
        self.notes = BeforeNotes(ctx.redis, self.keys, self.health)
        self.deadline = row_deadline(ctx.settings)
        self.mode = Mode()
        self.journal = BulkJournal(bulk_id)
        self.lanes = ctx.settings.bulk_in_flight  # rows in flight at most
        # Claimed accounts whose row has not settled: renewed while they wait, released
        # unapplied if the chunk stops early.
        self.held: dict[str, int] = {}
        self.claim_epoch = 0  # Redis's health epoch when the rows were claimed

    async def run(self) -> ChunkReport:
        started = time.perf_counter()
        rows = await self.load()
        if rows is None:  # finished and cleaned up by an earlier delivery, or lost
            await record_lost(self.ctx, self.keys, self.number, self.report)
            return self.report
        todo, cancelled_at, paused_at = await self.unrecorded(rows)
        if cancelled_at is not None:  # cancelled: nothing of it is sent any more
            await self.record_cancelled(todo)
        elif paused_at is not None:  # the task parks the chunk until the resume
            self.report.paused = len(todo)
        else:
            await self.send_all(todo)
            if self.report.transient == 0 and self.report.paused == 0:
                await self.ctx.redis.delete(self.keys.chunk(self.number))
        self.report.seconds = time.perf_counter() - started
        return self.report

    # -- before any request -----------------------------------------------------------

    async def load(self) -> list[BulkRow] | None:
        raw = await self.ctx.redis.get(self.keys.chunk(self.number))
        if raw is None:
            return None
        rows = [BulkRow.from_json(item) for item in json.loads(raw)]
        self.report.rows = len(rows)
        return rows

    async def unrecorded(self, rows: list[BulkRow]) -> tuple[list[BulkRow], Any, Any]:
        """The rows no earlier delivery recorded, and the bulk's cancel and pause marks."""
        fields = ["cancelled_at", "paused_at", "min_sample", *MODE_FIELDS, *JOURNAL_FIELDS]
        cancelled_at, paused_at, sample, *flags = await self.ctx.redis.hmget(self.keys.meta, fields)
        self.mode = Mode.from_meta(flags[: len(MODE_FIELDS)])
        self.journal = BulkJournal.from_meta(self.keys.bulk_id, flags, self.mode)  # fields last
        if sample is not None:  # --max-failures: at most `sample` in flight; a stop at once
            self.lanes = min(self.lanes, int(sample))
            self.recorder.guard(lambda: self.halt.seen(cancelled=False, paused=True))
        recorded = await recorded_lines(self.ctx.redis, self.keys, [row.line for row in rows])
        todo = [row for row, seen in zip(rows, recorded, strict=True) if not seen]
        self.report.skipped = len(rows) - len(todo)
        return todo, cancelled_at, paused_at

    async def record_cancelled(self, todo: list[BulkRow]) -> None:
        ttl = self.ctx.settings.result_expires
        outcomes = [cancelled(row) for row in todo]
        await self.ctx.record(keys=self.keys.record_keys(), args=record_args(outcomes, ttl))
        await self.ctx.redis.delete(self.keys.chunk(self.number))
        self.report.cancelled = len(todo)

    async def claim(self, rows: list[BulkRow]) -> list[Verdict]:
        """One Lua call claims every row's account (rows from before ordering existed pass)."""
        ordered = [(row.account, row.seq) for row in rows if row.seq]
        answers = iter(await self.ctx.ordering.claim(self.lock_owner, ordered) if ordered else [])
        return [next(answers) if row.seq else Verdict.CLAIMED for row in rows]

    # -- the rows ---------------------------------------------------------------------

    async def send_all(self, todo: list[BulkRow]) -> None:
        await self.ctx.redis.hsetnx(self.keys.meta, "started_at", repr(time.time()))
        # From before the claim: one answered after an outage is checked again (ClaimGuard).
        watchers = [asyncio.create_task(self.health.watch())]
        self.claim_epoch = self.health.epoch
        try:
            blobs = await self.ctx.redis.hmget(ACCOUNTS, [r.account for r in todo]) if todo else []
            # Before the claims: the epoch they are taken in (worker.queue.continuity).
            self.health.saw_data_epoch(await self.ctx.redis.get(EPOCH))
            verdicts = await self.claim(todo)
            sendable = [row for row, v in zip(todo, verdicts, strict=True) if v in SENDABLE]
            self.held = {row.account: row.seq for row in sendable}
            watchers.append(asyncio.create_task(self.keep_locks()))
            control = watch_control(self.ctx, self.keys, self.halt, self.lock_owner, self.health)
            watchers.append(asyncio.create_task(control))
            await self.run_lanes(iter(zip(todo, blobs, verdicts, strict=True)), len(todo))
        finally:
            for task in watchers[1:]:
                task.cancel()
            for account, seq in list(self.held.items()):  # stopped early: let the next in
                self.recorder.releases.append(Release(account, seq, Settled.UNKNOWN))
            try:
                await self.recorder.flush()
                if self.health.epoch:  # Redis went away meanwhile: it may be back short
                    await self.recorder.restore_lost()
            finally:
                watchers[0].cancel()

    async def run_lanes(self, work: Iterator[tuple[BulkRow, Any, Verdict]], count: int) -> None:
        """`bulk_in_flight` lanes take rows in turn: a task per lane, not per row (a
        thousand tasks and a semaphore cost a tenth of the engine's CPU)."""

        async def lane() -> None:
            for row, blob, verdict in work:
                await self.run_row(row, blob, verdict)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.lanes, count)):
                    group.create_task(lane())
        except BaseExceptionGroup as errors:
            # Only Redis trouble and cancellation get here (a row's own error fails the
            # row): say what went wrong, not "unhandled errors in a TaskGroup".
            first = errors.exceptions[0]
            raise first from (errors if len(errors.exceptions) > 1 else None)

    async def run_row(self, row: BulkRow, blob: Any, verdict: Verdict) -> None:
        if self.halt.is_set() and verdict in (Verdict.LOCKED, *SENDABLE):
            unsent = Settled.UNKNOWN if verdict == Verdict.UNSURE else Settled.NOT_APPLIED
            release = None if verdict == Verdict.LOCKED else Release(row.account, row.seq, unsent)
            await self.hold_back(row, release)
        elif verdict == Verdict.LOCKED:  # another update of it runs: wait, even on a final run
            self.report.wait_for_lock()
        elif verdict not in SENDABLE:
            self.journal.note_verdict(row.line, verdict)
            await self.settle(row, settled_elsewhere(row, verdict, self.ctx.settings), None)
        else:
            await self.send(row, blob, verdict)

    async def apply(self, row: BulkRow, blob: Any, unsure: bool, guard: ClaimGuard) -> str:
        return await apply_row(
            self.ctx,
            row,
            blob,
            self.mode,
            unsure,
            guard=guard.check,
            before=self.notes.write_before,
            note=self.notes.write_plan,
            read=self.journal.note_read,
            on_failure=lambda exc: self.note_attempt(row, exc),
        )

    async def apply_through(self, row: BulkRow, blob: Any, unsure: bool, guard: ClaimGuard) -> str:
        """`apply_row`, again, reading first, when Redis lost its data since the claim, or
        a connection to it failed before the row's request left (the rate limit's call, on
        a connection a restart closed): the guard waits for Redis and checks the claim
        again first. Bounded by the row's deadline."""
        while True:
            try:
                return await self.apply(row, blob, unsure, guard)
            except Reread:
                unsure = True
            except (RedisConnectionError, RedisTimeoutError):
                self.health.down()
                unsure = True

    async def send(self, row: BulkRow, blob: Any, verdict: Verdict) -> None:
        guard = ClaimGuard(self, row)
        try:
            async with asyncio.timeout(self.deadline):
                code = await self.apply_through(row, blob, verdict == Verdict.UNSURE, guard)
        except Halted:
            await self.hold_back(row, Release(row.account, row.seq, Settled.NOT_APPLIED))
        except ClaimLost as lost:
            await self.claim_lost(row, lost.verdict)
        except (TransientError, TimeoutError) as exc:
            await self.failed_for_now(row, exc)
        except _PERMANENT as exc:
            await self.settle(
                row, failed(row, exc), Release(row.account, row.seq, Settled.NOT_APPLIED)
            )
        except (RedisError, OSError):
            raise  # the chunk's own trouble: the task re-runs it once Redis is back
        except Exception as exc:  # a poison row fails alone; it may have been sent
            logger.warning("bulk row %d failed unexpectedly: %s", row.line, type(exc).__name__)
            outcome = failed_unexpectedly(row, exc)
            await self.settle(row, outcome, Release(row.account, row.seq, Settled.UNKNOWN))
        else:
            applied = Release(
                row.account, row.seq, Settled.APPLIED, row.send, row.email, self.ref(row)
            )
            await self.settle(row, Outcome(row.line, code), applied)

    # -- how a row ends ---------------------------------------------------------------

    async def settle(self, row: BulkRow, outcome: Outcome, release: Release | None) -> None:
        """Recorded, with its lock released and its journal entry written in the same go."""
        self.held.pop(row.account, None)
        self.report.count(outcome.code)
        await self.recorder.add(outcome, release, self.journal.entry(row, outcome.code))

    async def hold_back(self, row: BulkRow, release: Release | None) -> None:
        """A row the cancel or pause kept back: cancelled, or left for the resume."""
        self.held.pop(row.account, None)
        if self.halt.cancelled:
            self.report.cancelled += 1
            await self.recorder.add(cancelled(row), release)
        else:
            self.report.paused += 1
            if release is not None:
                await self.recorder.release_only(release)

    async def claim_lost(self, row: BulkRow, verdict: Verdict) -> None:
        self.held.pop(row.account, None)
        if verdict == Verdict.LOCKED and self.halt.is_set():
            await self.hold_back(row, None)
        elif verdict == Verdict.LOCKED:
            self.report.wait_for_lock()
        else:
            self.journal.note_verdict(row.line, verdict)
            await self.settle(row, settled_elsewhere(row, verdict, self.ctx.settings), None)

    async def failed_for_now(self, row: BulkRow, exc: BaseException) -> None:
        release = Release(row.account, row.seq, settled_by(exc))
        if self.halt.is_set():  # failed for now, and held back by the cancel or pause
            await self.hold_back(row, release)
        elif self.final:
            await self.settle(row, failed(row, exc), release)
        else:
            self.report.transient += 1
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                self.report.retry_after = max(self.report.retry_after or 0.0, exc.retry_after)
            self.held.pop(row.account, None)
            await self.recorder.release_only(release)

    # -- beside the rows --------------------------------------------------------------

    def ref(self, row: BulkRow) -> str:
        return f"bulk:{self.keys.bulk_id}:{row.line}"

    def note_attempt(self, row: BulkRow, exc: BaseException) -> None:
        """A PATCH attempt that may have reached the vendor: read the account back later."""
        if settled_by(exc) == Settled.UNKNOWN:
            self.recorder.ambiguous.append((row.account, self.ref(row)))

    async def keep_locks(self) -> None:
        """Renew the account locks of rows still waiting, so none lapses before its PATCH."""
        while True:
            await asyncio.sleep(LOCK_TTL / 4)
            if self.held:
                try:
                    await self.ctx.ordering.renew(self.lock_owner, list(self.held))
                except RedisError:
                    logger.warning("could not renew the locks of %d rows", len(self.held))
