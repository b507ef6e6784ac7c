"""What runs before every request of a bulk row: no request while the bulk is halted or
Redis is away (its outcome could not be recorded), and none on a claim from before an
outage unless it still holds.

A claim from before Redis lost its data (`RedisHealth.lost_in`) is taken again and,
when it holds, the row starts over reading its account first (`Reread`): the old claim,
and any record of an earlier attempt of the row, went with the data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from ..coordination.ordering import Verdict
from .halt import Halt
from .redis_health import RedisHealth

# A row still waiting for its request: the claim holds (or is to be checked first).
SENDABLE = (Verdict.CLAIMED, Verdict.UNSURE)

Claim = Callable[[list[Any]], Awaitable[list[Verdict]]]


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
    """Runs before every request of one row."""

    def __init__(self, row: Any, halt: Halt, health: RedisHealth, claim: Claim) -> None:
        self.row = row
        self.halt = halt
        self.health = health
        self.claim = claim
        self.claimed_in = health.epoch

    def check(self) -> Awaitable[None] | None:
        # The usual case, without a coroutine: nothing to wait for.
        health = self.health
        if not self.halt.is_set() and health.up and self.claimed_in == health.epoch:
            return None
        return self.recheck()

    async def recheck(self) -> None:
        health = self.health
        while True:
            if self.halt.is_set():
                raise Halted
            await health.wait_up()
            if self.claimed_in == health.epoch:
                return
            lost = health.lost_in > self.claimed_in
            try:
                (again,) = await self.claim([self.row])
            except RedisError:  # a stale connection right after a restart, say
                health.down()
                continue
            self.claimed_in = health.epoch
            if again not in SENDABLE:
                raise ClaimLost(again)
            if lost:
                raise Reread
