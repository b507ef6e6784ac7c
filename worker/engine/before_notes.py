"""What a bulk writes down about an account before it goes on (`BeforeNotes`): a
revertible bulk, what the account held before its PATCH; a plan, what it read.

Both go to the bulk's `before` hash, line -> JSON, first write kept (HSETNX): a
redelivered chunk never overwrites what an earlier delivery found. With Redis away,
each write waits for it: a row goes on only once its note is kept.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from ..api.models import VoicemailSettings
from ..coordination.bulk_records import BulkRow, Keys
from .redis_health import RedisHealth
from .row_send import plan_code, plan_entry

T = TypeVar("T")


class BeforeNotes:
    def __init__(self, redis: Any, keys: Keys, health: RedisHealth) -> None:
        self.redis = redis
        self.keys = keys
        self.health = health

    async def _until_written(self, write: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await write()
            except (RedisError, OSError):
                self.health.down()
                await self.health.wait_up()

    async def write_before(self, row: BulkRow, current: VoicemailSettings | None) -> bool:
        """What a revertible bulk found, written before its PATCH; with `current` None,
        whether an earlier delivery wrote it."""

        async def write() -> bool:
            if current is None:
                return bool(await self.redis.hexists(self.keys.before, row.line))
            found = [row.account, current.send, current.email, row.send, row.email]
            await self.redis.hsetnx(self.keys.before, row.line, json.dumps(found))
            return True

        return await self._until_written(write)

    async def write_plan(self, row: BulkRow, current: VoicemailSettings) -> str:
        """What a plan read of the row's account (`plan_entry`); returns the row's code,
        from what was kept: a redelivery that read otherwise agrees with the first."""

        async def write() -> str:
            entry = plan_entry(row, current)
            if await self.redis.hsetnx(self.keys.before, row.line, json.dumps(entry)):
                return plan_code(entry)
            kept = await self.redis.hget(self.keys.before, row.line)
            return plan_code(json.loads(kept)) if kept else plan_code(entry)

        return await self._until_written(write)
