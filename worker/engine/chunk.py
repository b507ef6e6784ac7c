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
    claim_call,
    lock_key,
    release_call,
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
    buffer: list[Outcome] = field(default_factory=list)
    releases: list[tuple[str, int, bool]] = field(default_factory=list)
    last: float = field(default_factory=time.monotonic)

    async def add(self, outcome: Outcome, release: tuple[str, int, bool] | None) -> None:
        self.buffer.append(outcome)
        if release is not None:
            self.releases.append(release)
        if len(self.buffer) >= _FLUSH_ROWS or time.monotonic() - self.last > _FLUSH_SECONDS:
            await self.flush()

    async def release_only(self, release: tuple[str, int, bool]) -> None:
        self.releases.append(release)

    async def flush(self) -> None:
        await aflush(self.ctx.redis, self.ctx.stats)
        batch, self.buffer, self.last = self.buffer, [], time.monotonic()
        releases, self.releases = self.releases, []
        if releases:
            # Applied numbers first: once an outcome is recorded, a redelivery must see it.
            keys, args = release_call(self.owner, releases)
            await self.ctx.release(keys=keys, args=args)
        if batch:
            ttl = self.ctx.settings.result_expires
            await self.ctx.record(keys=self.keys.record_keys(), args=record_args(batch, ttl))


class EngineContext:
    """What one engine process (or one inline run) keeps open."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = async_redis_client(settings.redis_url)
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


async def _apply(ctx: EngineContext, row: BulkRow, blob: Any, only_changed: bool) -> str:
    creds = ctx.cipher.open(row.account, blob)
    if only_changed:
        current = await acall_with_retries(ctx.settings, lambda: ctx.client.get_voicemail(creds))
        if current.send == row.send and current.email == row.email:
            return UNCHANGED
    await acall_with_retries(
        ctx.settings, lambda: ctx.client.set_voicemail(creds, row.send, row.email)
    )
    return SUCCEEDED


async def process_chunk(
    ctx: EngineContext, bulk_id: str, number: int, *, final: bool
) -> ChunkReport:
    started = time.perf_counter()
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
    owner = f"bulk:{bulk_id}:{number}"  # a redelivery of this chunk may take its own locks back
    verdicts = await _claim(ctx, owner, todo)
    recorder = _Recorder(ctx, keys, owner)
    gate = asyncio.Semaphore(ctx.settings.bulk_in_flight)
    held = {row.account for row, v in zip(todo, verdicts, strict=True) if v == CLAIMED and row.seq}
    renewer = asyncio.create_task(_keep_locks(ctx, owner, held))

    async def run(row: BulkRow, blob: Any, verdict: int) -> None:
        release: tuple[str, int, bool] | None = None
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
                    code = await _apply(ctx, row, blob, only_changed)
                    outcome = Outcome(row.line, code)
                    release = (row.account, row.seq, True)
                except TransientError as exc:
                    if not final:
                        report.transient += 1
                        if isinstance(exc, RateLimited) and exc.retry_after is not None:
                            report.retry_after = max(report.retry_after or 0.0, exc.retry_after)
                        await recorder.release_only((row.account, row.seq, False))
                        return
                    outcome = _failed(row, exc)
                    release = (row.account, row.seq, False)
                except (PermanentError, InputError, AccountNotFound, CredentialError) as exc:
                    outcome = _failed(row, exc)
                    release = (row.account, row.seq, False)
                finally:
                    held.discard(row.account)  # done with it: its lock is released below
        if outcome.code == SUCCEEDED:
            report.succeeded += 1
        elif outcome.code == UNCHANGED:
            report.unchanged += 1
        else:
            report.failed += 1
        await recorder.add(outcome, release)

    try:
        await asyncio.gather(*(run(r, b, v) for r, b, v in zip(todo, blobs, verdicts, strict=True)))
    finally:
        renewer.cancel()
        await recorder.flush()
        await aflush(ctx.redis, ctx.stats, force=True)
    if report.transient == 0:
        await ctx.redis.delete(keys.chunk(number))
    report.seconds = time.perf_counter() - started
    return report


async def _keep_locks(ctx: EngineContext, owner: str, held: set[str]) -> None:
    """Renew the account locks of rows still waiting, so none lapses before its PATCH."""
    while True:
        await asyncio.sleep(LOCK_TTL / 4)
        if held:
            await ctx.renew(keys=[lock_key(a) for a in list(held)], args=[owner, LOCK_TTL * 1000])


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
