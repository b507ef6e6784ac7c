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
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import RedisError

from ..api.aclient import AsyncPlusofonClient
from ..api.retry import acall_with_retries
from ..coordination.breaker import AsyncBreaker
from ..coordination.bulk_records import (
    RECORD_SCRIPT,
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
    CLAIM_SCRIPT,
    CLAIMED,
    LOCK_TTL,
    LOCKED,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    SUPERSEDED,
    UNSURE,
    Settled,
    claim_call,
    fence,
    release_call,
    renew_call,
    settled_by,
)
from ..coordination.ratelimit import AsyncRateLimiter
from ..coordination.stats import Stats, aflush
from ..core import constants as C
from ..core.connections import async_redis_client
from ..core.errors import (
    AccountNotFound,
    CredentialError,
    InputError,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..core.settings import Settings
from ..store.credentials import Cipher
from .health import RedisHealth

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
    transient: int = 0  # left for the next run
    retry_after: float | None = None
    missing: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Recorder:
    """Buffers outcomes and account releases; writes each batch with two Lua calls."""

    ctx: EngineContext
    keys: Keys
    owner: str
    health: RedisHealth
    buffer: list[Outcome] = field(default_factory=list)
    releases: list[tuple[str, int, str]] = field(default_factory=list)
    last: float = field(default_factory=time.monotonic)

    async def add(self, outcome: Outcome, release: tuple[str, int, str] | None) -> None:
        self.buffer.append(outcome)
        if release is not None:
            self.releases.append(release)
        if len(self.buffer) >= _FLUSH_ROWS or time.monotonic() - self.last > _FLUSH_SECONDS:
            await self.flush()

    async def release_only(self, release: tuple[str, int, str]) -> None:
        self.releases.append(release)

    async def flush(self) -> None:
        """Write what is buffered. With Redis away, keep it all and try again once Redis
        answers (`health`), so no finished row is lost or sent again."""
        batch, self.buffer, self.last = self.buffer, [], time.monotonic()
        releases, self.releases = self.releases, []
        while True:
            try:
                await self._write(batch, releases)
                return
            except (RedisError, OSError) as exc:
                logger.warning("bulk outcomes kept in memory until Redis answers: %s", exc)
                self.health.down()
                await self.health.wait_up()

    async def _write(self, batch: list[Outcome], releases: list[tuple[str, int, str]]) -> None:
        if releases:
            # Applied numbers first: once an outcome is recorded, a redelivery must see it.
            keys, args = release_call(self.owner, releases)
            await self.ctx.release(keys=keys, args=args)
            releases.clear()
        if batch:
            ttl = self.ctx.settings.result_expires
            await self.ctx.record(keys=self.keys.record_keys(), args=record_args(batch, ttl))
            batch.clear()
        try:
            await aflush(self.ctx.redis, self.ctx.stats)
        except RedisError:  # counters only: never worth holding outcomes back
            logger.debug("could not flush request statistics", exc_info=True)


class EngineContext:
    """What one engine process (or one inline run) keeps open."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Every row in flight may wait on Redis at once (the rate limit), plus the watchers.
        self.redis = async_redis_client(
            settings.redis_url, max_connections=settings.bulk_in_flight + 16
        )
        self.record = self.redis.register_script(RECORD_SCRIPT)
        self.claim = self.redis.register_script(CLAIM_SCRIPT)
        self.renew = self.redis.register_script(RENEW_SCRIPT)
        self.release = self.redis.register_script(RELEASE_SCRIPT)
        self.cipher = Cipher.from_settings(settings)
        self.stats = Stats()
        self.client = AsyncPlusofonClient(
            settings,
            limiter=AsyncRateLimiter(self.redis, settings.rate_limit, settings.token_rate_limit),
            breaker=AsyncBreaker(self.redis, settings),
            stats=self.stats,
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.redis.aclose()


async def _apply(
    ctx: EngineContext, row: BulkRow, blob: Any, only_changed: bool, unsure: bool
) -> str:
    creds = ctx.cipher.open(row.account, blob)
    if only_changed or unsure:
        current = await acall_with_retries(ctx.settings, lambda: ctx.client.get_voicemail(creds))
        if current.send == row.send and current.email == row.email:
            # Unsure: an earlier delivery's PATCH reached the API before it died.
            return UNCHANGED if only_changed else SUCCEEDED
    await acall_with_retries(
        ctx.settings, lambda: ctx.client.set_voicemail(creds, row.send, row.email)
    )
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
    only_changed = await ctx.redis.hget(keys.meta, "only_changed") == b"1"
    recorded = await ctx.redis.hmget(keys.done, [row.line for row in rows])
    todo = [row for row, seen in zip(rows, recorded, strict=True) if seen is None]
    report.skipped = len(rows) - len(todo)
    blobs = await ctx.redis.hmget(C.ACCOUNTS_KEY, [row.account for row in todo]) if todo else []
    verdicts = await _claim(ctx, owner, todo)
    health = RedisHealth(ctx.redis)
    recorder = _Recorder(ctx, keys, owner, health)
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
            async with gate:
                try:
                    # No new request while Redis is away: its outcome could not be recorded.
                    await health.wait_up()
                    async with asyncio.timeout(deadline):
                        code = await _apply(ctx, row, blob, only_changed, verdict == UNSURE)
                    outcome = Outcome(row.line, code)
                    release = (row.account, row.seq, Settled.APPLIED)
                except (TransientError, TimeoutError) as exc:
                    if not final:
                        report.transient += 1
                        if isinstance(exc, RateLimited) and exc.retry_after is not None:
                            report.retry_after = max(report.retry_after or 0.0, exc.retry_after)
                        held.pop(row.account, None)
                        await recorder.release_only((row.account, row.seq, settled_by(exc)))
                        return
                    outcome = _failed(row, exc)
                    release = (row.account, row.seq, settled_by(exc))
                except (PermanentError, InputError, AccountNotFound, CredentialError) as exc:
                    outcome = _failed(row, exc)
                    release = (row.account, row.seq, Settled.NOT_APPLIED)
                finally:
                    held.pop(row.account, None)  # done with it: its lock is released below
        if outcome.code == SUCCEEDED:
            report.succeeded += 1
        elif outcome.code == UNCHANGED:
            report.unchanged += 1
        else:
            report.failed += 1
        await recorder.add(outcome, release)

    watcher = asyncio.create_task(health.watch())
    renewer = asyncio.create_task(_keep_locks(ctx, owner, held))
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
        for row_account, seq in list(held.items()):  # stopped early: let the next one in
            recorder.releases.append((row_account, seq, Settled.UNKNOWN))
        await recorder.flush()
        watcher.cancel()
    if report.transient == 0:
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
        keys, args = claim_call(owner, [(row.account, row.seq) for row in ordered])
        answers = await ctx.claim(keys=keys, args=args)
    verdicts = iter(answers)
    return [int(next(verdicts)) if row.seq else CLAIMED for row in rows]


def _failed(row: BulkRow, exc: BaseException) -> Outcome:
    return Outcome.failed(
        row.line, failure_reason(exc), account=row.account, send=row.send, email=row.email
    )
