"""The Plusofon voicemail API: models, the mapping of answers to errors, the blocking and
asyncio clients, and the retry policy.

No Redis and no Celery here: a client gets its rate limiter, circuit breaker and request
statistics handed in (`worker.api.hooks` says what they must offer).
May import: `worker.core`.
"""
