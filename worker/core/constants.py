"""Defaults in one place; `worker.core.settings` reads the environment on top of them.
Redis key names live in `worker.core.keys`."""

from __future__ import annotations

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_API_URL = "https://restapi.plusofon.ru"
VOICEMAIL_PATH = "/api/v1/voicemail"
# The application code every vendor example sends in the `Client` header.
DEFAULT_CLIENT_ID = 10553

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
DEFAULT_POOL_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_MAX_KEEPALIVE = 20

# Short, in-process retries (tenacity).
DEFAULT_RETRY_ATTEMPTS = 4
DEFAULT_RETRY_BASE_DELAY = 0.5
DEFAULT_RETRY_MAX_DELAY = 8.0
# Longest Retry-After we will sleep on in process; longer waits are re-queued.
DEFAULT_RETRY_AFTER_MAX = 30.0

# Long waits: the task re-queues itself with a countdown instead of holding a slot.
DEFAULT_REQUEUE_MAX = 8
DEFAULT_REQUEUE_BASE_DELAY = 15.0
DEFAULT_REQUEUE_MAX_DELAY = 600.0

# 429s per account per run that wait their Retry-After without spending an attempt.
DEFAULT_RATE_LIMITED_MAX = 10

# Bulk: rows per chunk task, concurrent requests per bulk process.
DEFAULT_BULK_CHUNK_SIZE = 1000
DEFAULT_BULK_MAX_ROWS = 10_000_000  # a bulk with more rows is refused
DEFAULT_BULK_IN_FLIGHT = 100

# Circuit breaker: open for COOLDOWN s when at least THRESHOLD of the calls in a
# WINDOW s window failed, once the window holds MIN_CALLS calls (0 turns it off).
DEFAULT_BREAKER_THRESHOLD = 0.5
DEFAULT_BREAKER_MIN_CALLS = 20
DEFAULT_BREAKER_WINDOW = 10
DEFAULT_BREAKER_COOLDOWN = 5.0

# Seconds an unacknowledged message stays with its worker without a lease renewal.
DEFAULT_VISIBILITY_TIMEOUT = 60

DEFAULT_RESULT_EXPIRES = 86_400  # one day, in seconds
# Read an account back this long after an ambiguous answer: the read timeout (15 s) plus
# a margin, so a request the vendor was still working on when the client gave up has
# landed by then (docs/reliability.md, "The vendor ends holding the newest update").
DEFAULT_VERIFY_AFTER = 20.0
DEFAULT_PLAN_TTL = 86_400  # how long `bulk plan` keeps a plan, in seconds
# How long an account's ordering state outlives its last update; an update older than
# this when a worker reaches it is not applied (Expired).
DEFAULT_ORDERING_TTL = 7 * 86_400
DEFAULT_DEAD_LETTER_DAYS = 30  # dead letters older are dropped on write and by `dead purge`

DEFAULT_ACCOUNT = "default"
SECRET_KEY_MIN_LENGTH = 32
