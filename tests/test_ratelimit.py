"""The shared rate limit's Lua scripts, on a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from worker.coordination import ratelimit
from worker.coordination.ratelimit import AsyncRateLimiter, RateLimiter, token_key


@pytest.fixture(autouse=True)
def _fresh_schedule(redis_client: redis.Redis) -> None:
    redis_client.delete(ratelimit.GLOBAL_KEY)


def test_reservations_are_evenly_spaced(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, rate=50, token_rate=None)
    token = uuid.uuid4().hex
    started = time.monotonic()
    for _ in range(11):
        limiter.acquire(token)
    # 11 requests at 50/s: the 11th leaves 10 intervals (0.2 s) after the first.
    assert 0.18 <= time.monotonic() - started < 0.5


def test_per_token_limit_leaves_other_tokens_alone(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, rate=None, token_rate=5)
    slow, other = uuid.uuid4().hex, uuid.uuid4().hex
    limiter.acquire(slow)
    started = time.monotonic()
    limiter.acquire(other)
    assert time.monotonic() - started < 0.05
    limiter.acquire(slow)
    assert time.monotonic() - started >= 0.15  # one interval of 0.2 s, less scheduling


def test_penalty_delays_the_token(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, rate=1000, token_rate=None)
    token = uuid.uuid4().hex
    limiter.penalize(token, 0.3)
    started = time.monotonic()
    limiter.acquire(token)
    assert time.monotonic() - started >= 0.25
    assert token not in str(redis_client.keys("voicemail:rate:*"))
    assert redis_client.exists(token_key(token))


def test_no_limits_means_no_redis_calls(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, rate=None, token_rate=None)
    assert not limiter.enabled
    assert limiter.acquire("t") == 0.0


def test_async_and_blocking_share_one_schedule(redis_url: str, redis_client: redis.Redis) -> None:
    blocking = RateLimiter(redis_client, rate=20, token_rate=None)
    blocking.acquire("a")

    async def reserve() -> float:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await AsyncRateLimiter(client, rate=20, token_rate=None).acquire("b")
        finally:
            await client.aclose()

    waited = asyncio.run(reserve())
    assert waited >= 0.03  # the async caller queued behind the blocking one (50 ms slots)
