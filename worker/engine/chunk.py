"""One chunk of a bulk, run on asyncio: every row claimed, sent and recorded.

Per row the single-job semantics hold: short tenacity retries, permanent errors
recorded at once, a 429 waits its Retry-After without spending an attempt.
Rows still failing transiently are left unrecorded and the chunk task re-queues
itself; on its last run they are recorded as failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from ..api.models import VoicemailSettings
from ..api.retry import acall_with_retries
from ..coordination.bulk_records import (
    CANCELLED,
    SUCCEEDED,
    UNCHANGED,
    BulkRow,
    Keys,
    Outcome,
    failure_reason,
    record_args,
)
from ..coordination.ordering import (
    APPLIED,
    CLAIMED,
    LOCK_TTL,
    LOCKED,
    SUPERSEDED,
    UNSURE,
    Settled,
    claim_call,
    fence,
    renew_call,
    settled_by,
    straggler_window,
)
from ..core import constants as C
from ..core.errors import (
    AccountNotFound,
    CredentialError,
    InputError,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..core.settings import Settings
from .context import ChunkReport, EngineContext, Recorder
from .health import RedisHealth

logger = logging.getLogger(__name__)


class _Cancelled(Exception):
    """The bulk was cancelled: this row is not sent."""


class _ClaimLost(Exception):
    """Redis went away after the row was claimed, and on its return the claim did not hold."""

    def __init__(self, verdict: int) -> None:
        super().__init__(verdict)
        self.verdict = verdict


async def _no_guard() -> None:
    return None


async def _apply(
    ctx: EngineContext,
    row: BulkRow,
    blob: Any,
    only_changed: bool,
    unsure: bool,
    guard: Callable[[], Awaitable[None]] = _no_guard,
) -> str:
    """GET (when asked) and PATCH one row; `guard` runs before every attempt."""
    creds = ctx.cipher.open(row.account, blob)

    async def get() -> VoicemailSettings:
        await guard()
        return await ctx.client.get_voicemail(creds, ready=guard)

    async def patch() -> VoicemailSettings:
        await guard()  # before taking a rate-limit slot, and again right before sending
        return await ctx.client.set_voicemail(creds, row.send, row.email, ready=guard)

    if only_changed or unsure:
        current = await acall_with_retries(ctx.settings, get)
        if current.send == row.send and current.email == row.email:
            # Unsure: an earlier delivery's PATCH reached the API before it died.
            return UNCHANGED if only_changed else SUCCEEDED
    await acall_with_retries(ctx.settings, patch)
    return SUCCEEDED


def row_deadline(settings: Settings) -> float:
    """The longest one row may take: every attempt timing out, every backoff, every 429."""
    attempt = settings.connect_timeout + settings.read_timeout + settings.retry_max_delay
    waits = settings.retry_after_max * settings.rate_limited_max
    return attempt * (settings.retry_attempts + 1) + waits


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
    await ctx.redis.hsetnx(keys.meta, "started_at", repr(time.time()))
    flags = await ctx.redis.hmget(keys.meta, ["only_changed", "cancelled_at"])
    only_changed = flags[0] == b"1"
    recorded = await ctx.redis.hmget(keys.done, [row.line for row in rows])
    todo = [row for row, seen in zip(rows, recorded, strict=True) if seen is None]
    report.skipped = len(rows) - len(todo)
    if flags[1] is not None:  # cancelled: nothing of it is sent any more
        ttl = ctx.settings.result_expires
        outcomes = [_cancelled(row) for row in todo]
        await ctx.record(keys=keys.record_keys(), args=record_args(outcomes, ttl))
        await ctx.redis.delete(keys.chunk(number))
        report.cancelled = len(todo)
        return report
    stop = asyncio.Event()  # set within half a second of a cancel, on every worker
    blobs = await ctx.redis.hmget(C.ACCOUNTS_KEY, [row.account for row in todo]) if todo else []
    verdicts = await _claim(ctx, owner, todo)
    health = RedisHealth(ctx.redis)
    recorder = Recorder(ctx, keys, owner, health)
    gate = asyncio.Semaphore(ctx.settings.bulk_in_flight)
    deadline = row_deadline(ctx.settings)
    # Claimed accounts whose row is not settled yet: renewed while they wait, released
    # unapplied if the chunk stops early.
    held = {
        row.account: row.seq
        for row, v in zip(todo, verdicts, strict=True)
        if v in (CLAIMED, UNSURE) and row.seq
    }

    async def run(row: BulkRow, blob: Any, verdict: int) -> None:
        release: tuple[str, int, str] | None = None
        if stop.is_set() and verdict in (LOCKED, CLAIMED, UNSURE):
            if verdict != LOCKED:
                held.pop(row.account, None)
                settled = Settled.UNKNOWN if verdict == UNSURE else Settled.NOT_APPLIED
                release = (row.account, row.seq, settled)
            report.cancelled += 1
            await recorder.add(_cancelled(row), release)
            return
        if verdict == LOCKED and not final:  # another update of the account is running
            report.transient += 1
            return
        if verdict == LOCKED:
            outcome = Outcome.failed(
                row.line,
                "AccountBusy: another update of this account kept it locked",
                account=row.account,
                send=row.send,
                email=row.email,
            )
        elif verdict == APPLIED:  # applied by an earlier delivery that died before recording
            outcome = Outcome(row.line, SUCCEEDED)
        elif verdict == SUPERSEDED:  # a later update of the account is already applied
            outcome = Outcome(row.line, UNCHANGED)
        else:
            claimed_in = health.epoch

            async def guard() -> None:
                # No new request while Redis is away (its outcome could not be recorded),
                # and none on a claim from before an outage unless it still holds.
                nonlocal claimed_in
                while True:
                    if stop.is_set():
                        raise _Cancelled
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

            async with gate:
                try:
                    async with asyncio.timeout(deadline):
                        code = await _apply(
                            ctx, row, blob, only_changed, verdict == UNSURE, guard=guard
                        )
                    outcome = Outcome(row.line, code)
                    release = (row.account, row.seq, Settled.APPLIED)
                except _Cancelled:
                    outcome = _cancelled(row)
                    release = (row.account, row.seq, Settled.NOT_APPLIED)
                except _ClaimLost as lost:
                    held.pop(row.account, None)
                    if lost.verdict == LOCKED and stop.is_set():
                        report.cancelled += 1
                        await recorder.add(_cancelled(row), None)
                        return
                    if lost.verdict == LOCKED and not final:
                        report.transient += 1
                        return
                    outcome = _settled_elsewhere(row, lost.verdict)
                except (TransientError, TimeoutError) as exc:
                    if stop.is_set():  # failed for now, and nobody wants it any more
                        outcome = _cancelled(row)
                        release = (row.account, row.seq, settled_by(exc))
                    elif not final:
                        report.transient += 1
                        if isinstance(exc, RateLimited) and exc.retry_after is not None:
                            report.retry_after = max(report.retry_after or 0.0, exc.retry_after)
                        held.pop(row.account, None)
                        await recorder.release_only((row.account, row.seq, settled_by(exc)))
                        return
                    else:
                        outcome = _failed(row, exc)
                        release = (row.account, row.seq, settled_by(exc))
                except (PermanentError, InputError, AccountNotFound, CredentialError) as exc:
                    outcome = _failed(row, exc)
                    release = (row.account, row.seq, Settled.NOT_APPLIED)
            # Settled: its lock is released with its outcome. (A row cancelled mid-flight
            # stays in `held`, and the chunk releases it on the way out.)
            held.pop(row.account, None)
        if outcome.code == SUCCEEDED:
            report.succeeded += 1
        elif outcome.code == UNCHANGED:
            report.unchanged += 1
        elif outcome.code == CANCELLED:
            report.cancelled += 1
        else:
            report.failed += 1
        await recorder.add(outcome, release)

    watcher = asyncio.create_task(health.watch())
    renewer = asyncio.create_task(_keep_locks(ctx, owner, held))
    canceller = asyncio.create_task(_watch_cancel(ctx, keys, stop))
    try:
        # A TaskGroup: a row failing in an unexpected way stops its siblings too, so none
        # runs on in this process's loop into the next chunk.
        async with asyncio.TaskGroup() as group:
            for row, blob, verdict in zip(todo, blobs, verdicts, strict=True):
                group.create_task(run(row, blob, verdict))
    except BaseExceptionGroup as errors:
        # Say what went wrong, not "unhandled errors in a TaskGroup".
        first = errors.exceptions[0]
        raise first from (errors if len(errors.exceptions) > 1 else None)
    finally:
        renewer.cancel()
        canceller.cancel()
        for row_account, seq in list(held.items()):  # stopped early: let the next one in
            recorder.releases.append((row_account, seq, Settled.UNKNOWN))
        await recorder.flush()
        watcher.cancel()
    if report.transient == 0:
        await ctx.redis.delete(keys.chunk(number))
    report.seconds = time.perf_counter() - started
    return report


CANCEL_POLL = 0.5  # seconds between looks at the bulk's cancel flag while a chunk runs


async def _watch_cancel(ctx: EngineContext, keys: Keys, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(CANCEL_POLL)
        try:
            if await ctx.redis.hget(keys.meta, "cancelled_at") is not None:
                stop.set()
        except RedisError:  # Redis away: the health watcher holds every request back
            continue


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
        keys, args = claim_call(owner, items, straggler_window(ctx.settings))
        answers = await ctx.claim(keys=keys, args=args)
    verdicts = iter(answers)
    return [int(next(verdicts)) if row.seq else CLAIMED for row in rows]


def _cancelled(row: BulkRow) -> Outcome:
    return Outcome.cancelled(row.line, account=row.account, send=row.send, email=row.email)


def _settled_elsewhere(row: BulkRow, verdict: int) -> Outcome:
    if verdict == APPLIED:
        return Outcome(row.line, SUCCEEDED)
    if verdict == SUPERSEDED:
        return Outcome(row.line, UNCHANGED)
    return Outcome.failed(
        row.line,
        "AccountBusy: another update of this account kept it locked",
        account=row.account,
        send=row.send,
        email=row.email,
    )


def _failed(row: BulkRow, exc: BaseException) -> Outcome:
    return Outcome.failed(
        row.line, failure_reason(exc), account=row.account, send=row.send, email=row.email
    )
