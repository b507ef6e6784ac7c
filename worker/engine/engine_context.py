"""What one engine process keeps open (`EngineContext`): its Redis client and scripts,
the async API client with its limiter and breaker, the cipher, the journal
and the statistics."""

from __future__ import annotations

from ..api.aclient import AsyncPlusofonClient
from ..coordination.breaker import AsyncBreaker
from ..coordination.bulk_records import RECORD_SCRIPT
from ..coordination.journal import open_async_journal
from ..coordination.ordering import AsyncOrdering
from ..coordination.ratelimit import AsyncRateLimiter
from ..coordination.readback import AsyncReadBack
from ..coordination.stats import Stats
from ..core.connections import async_redis_client
from ..core.settings import Settings
from ..store.credentials import Cipher


class EngineContext:
    """What one engine process (or one inline run) keeps open."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Every row in flight may wait on Redis at once (the rate limit), plus the watchers.
        self.redis = async_redis_client(
            settings.redis_url, max_connections=settings.bulk_in_flight + 16
        )
        self.record = self.redis.register_script(RECORD_SCRIPT)
        self.ordering = AsyncOrdering.for_settings(self.redis, settings)
        self.readback = AsyncReadBack(
            self.redis, after=settings.verify_after, ttl=settings.ordering_ttl
        )
        self.journal = open_async_journal(settings, self.redis)
        self.cipher = Cipher.from_settings(settings)
        self.stats = Stats()
        self.client = AsyncPlusofonClient(
            settings,
            limiter=AsyncRateLimiter(self.redis, settings.rate_limit, settings.token_rate_limit),
            breaker=AsyncBreaker(self.redis, settings),
            stats=self.stats,
        )

    async def aclose(self) -> None:
        await self.journal.aclose()
        await self.client.aclose()
        await self.redis.aclose()
