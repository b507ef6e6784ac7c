"""One chunk of a bulk, run on asyncio: every row claimed, sent and recorded.

Per row the single-job semantics hold: short tenacity retries, permanent errors
recorded at once, a 429 waits its Retry-After without spending an attempt.
Rows still failing transiently are left unrecorded and the chunk task re-queues
itself; on its last run they are recorded as failed.

A cancel or a pause (seen within `CONTROL_POLL` seconds, and before every request)
stops new requests; those in flight finish. A cancel records the rows not sent as
`cancelled`; a pause leaves them unrecorded, for the chunk to run again on resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from ..api.models import VoicemailSettings
from ..coordination.bulk_records import (
    SUCCEEDED,
    UNCHANGED,
    BulkRow,
    Keys,
    Outcome,
    failure_reason,
    record_args,
    recorded_lines,
)
from ..coordination.ordering import (
    APPLIED,
    CLAIMED,
    EXPIRED,
    LOCK_TTL,
    LOCKED,
    NOT_ISSUED,
    SUPERSEDED,
    UNSURE,
    Settled,
    claim_call,
    expired_reason,
    fence,
    renew_call,
    settled_by,
    straggler_window,
)
from ..core.errors import (
    AccountNotFound,
    Conflict,
    CredentialError,
    InputError,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..core.keys import ACCOUNTS
from .engine_context import EngineContext
from .halt import Halt, watch_control
from .recorder import ChunkReport, Recorder
from .redis_health import RedisHealth
from .row_send import Mode, apply_row, row_deadline

__all__ = ["process_chunk", "row_deadline"]

logger = logging.getLogger(__name__)


class _Halted(Exception):
    """The bulk was cancelled or paused: this row is not sent."""


class _ClaimLost(Exception):
    """Redis went away after the row was claimed, and on its return the claim did not hold."""

    def __init__(self, verdict: int) -> None:
        super().__init__(verdict)
        self.verdict = verdict


async def process_chunk(
    ctx: EngineContext, bulk_id: str, number: int, *, final: bool, owner: str | None = None
) -> ChunkReport:
    """Run one chunk. `owner` is this delivery's lock owner (`ordering.fence`)."""
    started = time.perf_counter()
    owner = owner or fence("inline")
    keys = Keys(bulk_id)
    report = ChunkReport()
    raw = await ctx.redis.get(keys.chunk(number))
    if raw is None:
        # Finished and cleaned up by an earlier delivery, or expired with the bulk.
        return ChunkReport(missing=True)
    rows = [BulkRow.from_json(item) for item in json.loads(raw)]
    report.rows = len(rows)
    fields = ["cancelled_at", "paused_at", "only_changed", "revertible", "reverts"]
    cancelled_at, paused_at, *flags = await ctx.redis.hmget(keys.meta, fields)
    mode = Mode.from_meta(*flags)
    recorded = await recorded_lines(ctx.redis, keys, [row.line for row in rows])
    todo = [row for row, seen in zip(rows, recorded, strict=True) if not seen]
    report.skipped = len(rows) - len(todo)
    if cancelled_at is not None:  # cancelled: nothing of it is sent any more
        ttl = ctx.settings.result_expires
        outcomes = [_cancelled(row) for row in todo]
        await ctx.record(keys=keys.record_keys(), args=record_args(outcomes, ttl))
        await ctx.redis.delete(keys.chunk(number))
        report.cancelled = len(todo)
        return report
    if paused_at is not None:  # the task parks the chunk until the resume
        report.paused = len(todo)
        return report
    await ctx.redis.hsetnx(keys.meta, "started_at", repr(time.time()))
    halt = Halt()
    blobs = await ctx.redis.hmget(ACCOUNTS, [row.account for row in todo]) if todo else []
    verdicts = await _claim(ctx, owner, todo)
    health = RedisHealth(ctx.redis)
    recorder = Recorder(ctx, keys, owner, health)
    deadline = row_deadline(ctx.settings)
    # Claimed accounts whose row is not settled yet: renewed while they wait, released
    # unapplied if the chunk stops early.
    held = {
        row.account: row.seq
        for row, v in zip(todo, verdicts, strict=True)
        if v in (CLAIMED, UNSURE) and row.seq
    }

    async def halted(row: BulkRow, release: tuple[str, int, str] | None) -> None:
        """A row the cancel or pause kept back: cancelled, or left for the resume."""
        held.pop(row.account, None)
        if halt.cancelled:
            report.cancelled += 1
            await recorder.add(_cancelled(row), release)
        else:
            report.paused += 1
            if release is not None:
                await recorder.release_only(release)

    async def before(row: BulkRow, current: VoicemailSettings | None) -> bool:
        """What a revertible bulk found, written (HSETNX: a redelivery keeps the first)
        before its PATCH; with `current` None, whether an earlier delivery wrote it."""
        while True:
            try:
                if current is None:
                    return bool(await ctx.redis.hexists(keys.before, row.line))
                found = [row.account, current.send, current.email, row.send, row.email]
                await ctx.redis.hsetnx(keys.before, row.line, json.dumps(found))
                return True
            except (RedisError, OSError):
                health.down()
                await health.wait_up()

    async def run(row: BulkRow, blob: Any, verdict: int) -> None:
        release: tuple[str, int, str] | None = None
        if halt.is_set() and verdict in (LOCKED, CLAIMED, UNSURE):
            if verdict != LOCKED:
                settled = Settled.UNKNOWN if verdict == UNSURE else Settled.NOT_APPLIED
                release = (row.account, row.seq, settled)
            await halted(row, release)
            return
        if verdict == LOCKED and not final:  # another update of the account is running
            report.transient += 1
            return
        if verdict in (LOCKED, APPLIED, SUPERSEDED, EXPIRED, NOT_ISSUED):
            outcome = _settled_elsewhere(row, verdict, ctx.settings.ordering_ttl)
        else:
            claimed_in = health.epoch

            def guard() -> Awaitable[None] | None:
                # The usual case, without a coroutine: nothing to wait for.
                if not halt.is_set() and health.up and claimed_in == health.epoch:
                    return None
                return recheck()

            async def recheck() -> None:
                # No new request while Redis is away (its outcome could not be recorded),
                # and none on a claim from before an outage unless it still holds.
                nonlocal claimed_in
                while True:
                    if halt.is_set():
                        raise _Halted
                    await health.wait_up()
                    if claimed_in == health.epoch:
                        return
                    try:
                        (again,) = await _claim(ctx, owner, [row])
                    except RedisError:  # a stale connection right after a restart, say
                        health.down()
                        continue
                    claimed_in = health.epoch
                    if again not in (CLAIMED, UNSURE):
                        raise _ClaimLost(again)

            try:
                async with asyncio.timeout(deadline):
                    code = await apply_row(
                        ctx, row, blob, mode, verdict == UNSURE, guard=guard, before=before
                    )
                outcome = Outcome(row.line, code)
                release = (row.account, row.seq, Settled.APPLIED)
            except _Halted:
                await halted(row, (row.account, row.seq, Settled.NOT_APPLIED))
                return
            except _ClaimLost as lost:
                held.pop(row.account, None)
                if lost.verdict == LOCKED and halt.is_set():
                    await halted(row, None)
                    return
                if lost.verdict == LOCKED and not final:
                    report.transient += 1
                    return
                outcome = _settled_elsewhere(row, lost.verdict, ctx.settings.ordering_ttl)
            except (TransientError, TimeoutError) as exc:
                if halt.is_set():  # failed for now, and held back by the cancel or pause
                    await halted(row, (row.account, row.seq, settled_by(exc)))
                    return
                if not final:
                    report.transient += 1
                    if isinstance(exc, RateLimited) and exc.retry_after is not None:
                        report.retry_after = max(report.retry_after or 0.0, exc.retry_after)
                    held.pop(row.account, None)
                    await recorder.release_only((row.account, row.seq, settled_by(exc)))
                    return
                outcome = _failed(row, exc)
                release = (row.account, row.seq, settled_by(exc))
            except (
                PermanentError,
                InputError,
                AccountNotFound,
                CredentialError,
                Conflict,
            ) as exc:
                outcome = _failed(row, exc)
                release = (row.account, row.seq, Settled.NOT_APPLIED)
            # Settled: its lock is released with its outcome.
            held.pop(row.account, None)
        report.count(outcome.code)
        await recorder.add(outcome, release)

    watcher = asyncio.create_task(health.watch())
    renewer = asyncio.create_task(_keep_locks(ctx, owner, held))
    controller = asyncio.create_task(watch_control(ctx, keys, halt))
    try:
        # `bulk_in_flight` lanes take rows in turn: a task per lane, not per row (a
        # thousand tasks and a semaphore cost a tenth of the engine's CPU). A TaskGroup:
        # a row failing in an unexpected way stops its siblings too, so none runs on in
        # this process's loop into the next chunk.
        work = iter(zip(todo, blobs, verdicts, strict=True))

        async def lane() -> None:
            for row, blob, verdict in work:
                await run(row, blob, verdict)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(ctx.settings.bulk_in_flight, len(todo))):
                group.create_task(lane())
    except BaseExceptionGroup as errors:
        # Say what went wrong, not "unhandled errors in a TaskGroup".
        first = errors.exceptions[0]
        raise first from (errors if len(errors.exceptions) > 1 else None)
    finally:
        renewer.cancel()
        controller.cancel()
        for row_account, seq in list(held.items()):  # stopped early: let the next one in
            recorder.releases.append((row_account, seq, Settled.UNKNOWN))
        await recorder.flush()
        watcher.cancel()
    if report.transient == 0 and report.paused == 0:
        await ctx.redis.delete(keys.chunk(number))
    report.seconds = time.perf_counter() - started
    return report


async def _keep_locks(ctx: EngineContext, owner: str, held: dict[str, int]) -> None:
    """Renew the account locks of rows still waiting, so none lapses before its PATCH."""
    while True:
        await asyncio.sleep(LOCK_TTL / 4)
        if held:
            keys, args = renew_call(owner, list(held))
            try:
                await ctx.renew(keys=keys, args=args)
            except RedisError:
                logger.warning("could not renew the locks of %d rows", len(keys))


async def _claim(ctx: EngineContext, owner: str, rows: list[BulkRow]) -> list[int]:
    """One Lua call claims every row's account (rows from before ordering existed pass)."""
    ordered = [row for row in rows if row.seq]
    answers: list[Any] = []
    if ordered:
        items = [(row.account, row.seq) for row in ordered]
        settings = ctx.settings
        keys, args = claim_call(owner, items, straggler_window(settings), settings.ordering_ttl)
        answers = await ctx.claim(keys=keys, args=args)
    verdicts = iter(answers)
    return [int(next(verdicts)) if row.seq else CLAIMED for row in rows]


def _row(row: BulkRow) -> dict[str, Any]:
    """What `bulk retry` needs to send the row again (a revert's row: what it expects)."""
    out: dict[str, Any] = {"account": row.account, "send": row.send, "email": row.email}
    if row.expect is not None:
        out["expect"] = list(row.expect)
    return out


def _cancelled(row: BulkRow) -> Outcome:
    return Outcome.cancelled(row.line, **_row(row))


def _settled_elsewhere(row: BulkRow, verdict: int, ordering_ttl: int) -> Outcome:
    if verdict == APPLIED:  # applied by an earlier delivery that died before recording
        return Outcome(row.line, SUCCEEDED)
    if verdict == SUPERSEDED:  # a later update of the account is already applied
        return Outcome(row.line, UNCHANGED)
    if verdict == EXPIRED:
        reason = f"Expired: {expired_reason(row.seq, ordering_ttl)}"
        return Outcome.failed(row.line, reason, **_row(row))
    if verdict == NOT_ISSUED:
        reason = f"InputError: seq {row.seq} was never issued"
        return Outcome.failed(row.line, reason, **_row(row))
    return Outcome.failed(  # LOCKED on the last run: another update kept it
        row.line, "AccountBusy: another update of this account kept it locked", **_row(row)
    )


def _failed(row: BulkRow, exc: BaseException) -> Outcome:
    return Outcome.failed(row.line, failure_reason(exc), **_row(row))
