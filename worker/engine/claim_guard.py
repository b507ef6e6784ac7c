"""What runs before every request of a bulk row (`ClaimGuard`), and how it refuses one:
`Halted` (the bulk was cancelled or paused), `ClaimLost` (the row's claim did not
survive a Redis outage) or `Reread` (Redis lost its data since the claim). Split out of
`chunk_run`, which catches all three.

A claim from before Redis lost its data (`RedisHealth.lost_in`) is taken again and,
when it holds, the row starts over reading its account first (`Reread`): the old claim,
and any record of an earlier attempt of the row, went with the data.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from redis.exceptions import RedisError

from ..coordination.bulk_records import BulkRow
from ..coordination.ordering import Verdict
from .halt import Halt
from .recorder import Recorder
from .redis_health import RedisHealth


class GuardedRun(Protocol):
    """What the guard looks at of its chunk's run (`chunk_run.ChunkRun`)."""

    halt: Halt
    health: RedisHealth
    recorder: Recorder
    claim_epoch: int  # Redis's health epoch from before the rows' claim was sent

    async def claim(self, rows: list[BulkRow]) -> list[Verdict]: ...


# A row still waiting for its request: the claim holds (or is to be checked first).
SENDABLE = (Verdict.CLAIMED, Verdict.UNSURE)


class Halted(Exception):
    """The bulk was cancelled or paused: this row is not sent."""


class ClaimLost(Exception):
    """Redis went away after the row was claimed, and on its return the claim did not hold."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict)
        self.verdict = verdict


class Reread(Exception):
    """Redis lost its data since the row was claimed: claimed again, the row is to be
    read before it is sent, as an unsure one."""


class ClaimGuard:
    """Runs before every request of one row: no request while the bulk is halted or Redis
    is away (its outcome could not be recorded), none on a claim from before an outage
    unless it still holds, none while a failed row of a guarded bulk is recorded."""

    def __init__(self, run: GuardedRun, row: BulkRow) -> None:
        self.run = run
        self.row = row
        # From before the claim: one sent before an outage and answered after it (a link
        # cut mid-call) is checked again.
        self.claimed_in = run.claim_epoch

    def check(self) -> Awaitable[None] | None:
        # The usual case, without a coroutine: nothing to wait for.
        run, health = self.run, self.run.health
        quiet = not (run.halt.is_set() or run.recorder.recording)
        if quiet and health.up and self.claimed_in == health.epoch:
            return None
        return self.recheck()

    async def recheck(self) -> None:
        health = self.run.health
        await self.run.recorder.wait_recorded()  # its step may stop the bulk (--max-failures)
        while True:
            if self.run.halt.is_set():
                raise Halted
            await health.wait_up()
            if self.claimed_in == health.epoch:
                return
            lost = health.lost_in > self.claimed_in
            try:
                (again,) = await self.run.claim([self.row])
            except RedisError:  # a stale connection right after a restart, say
                health.down()
                continue
            self.claimed_in = health.epoch
            if again not in SENDABLE:
                raise ClaimLost(again)
            if lost:
                raise Reread
