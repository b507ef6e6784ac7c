"""Every Redis key this project writes, named in one place; other modules call these.

Celery's and kombu's own keys (`celery-task-meta-*`, `_kombu.*`, `unacked`) are theirs.
A `{...}` in a name is a Redis Cluster hash tag: the keys of one bulk, or of one account,
hash to the same slot, so one Lua call may touch them all.
"""

from __future__ import annotations

from collections.abc import Callable

PREFIX = "voicemail:"

# Credential store (worker.store.credentials).
ACCOUNTS = PREFIX + "accounts"  # hash: account -> sealed token
ACCOUNTS_CHECK = PREFIX + "accounts:keycheck"  # the fingerprint of the key that sealed them

# Producer side (tasks.producer, worker.queue.app).
JOB_PREFIX = PREFIX + "job:"  # + job id: "this id was queued by us"
BULKS = PREFIX + "bulks"  # zset: bulk id -> created_at, recent bulks for the metrics

# Ordering (worker.coordination.ordering and its Lua scripts).
SEQ = PREFIX + "seq"  # the global update counter
# Written once, by the first worker, and never expires: gone (or another) means Redis lost
# its data (worker.queue.continuity).
EPOCH = PREFIX + "epoch"
APPLIED_PREFIX = PREFIX + "applied:"  # + day: hash account -> highest applied number

# Liveness (worker.queue.liveness); claim.lua reads REAPED_PREFIX.
INSTANCES = PREFIX + "instances"  # hash: instance -> node name, pid
REAPED_PREFIX = PREFIX + "reaped:"  # + instance: set once a reaper gave its messages back
NODES = PREFIX + "nodes"  # hash: worker node name -> the instance it runs as now (health)
BEATS = PREFIX + "beats"  # hash: instance -> its last beat, ms on Redis's clock

# Lost-job recovery (worker.queue.recovery).
PENDING = PREFIX + "pending"  # zset: job id -> when it was (last) published
PENDING_MSG = PREFIX + "pending:msg"  # hash: job id -> {task, args, kwargs, queue}
PENDING_AT = PREFIX + "pending:at"  # zset: job id -> when it was published (Redis's clock)
RECEIVED_THROUGH = PREFIX + "received_through"  # zset: queue -> latest publish received
SWEEP_LOCK = PREFIX + "recovery:lock"

# Dead letters (worker.queue.deadletter).
DEAD_LETTERS = PREFIX + "dead"  # hash: job id -> JSON letter
DEAD_LETTER_INDEX = PREFIX + "dead:index"  # zset: job id -> failed at

# Shared request state (worker.coordination).
STATS = PREFIX + "stats"
RATE_GLOBAL = PREFIX + "rate:global"
BREAKER_OPEN = PREFIX + "breaker:open_until"
BREAKER_WINDOW = PREFIX + "breaker:window"
BREAKER_HALF_OPEN = PREFIX + "breaker:half_open"
BREAKER_PROBE = PREFIX + "breaker:probe"

# Read-backs after ambiguous answers (worker.coordination.readback): a zset of accounts
# scored by when to read them; each account's intent hash, `intent:{account}`.
READBACK = PREFIX + "readback"
INTENT_PREFIX = PREFIX + "intent:"

# Bulks that settled with a notification still to send (worker.queue.notify).
NOTIFY_OUTBOX = PREFIX + "notify:outbox"
# Bulks whose parked chunks are being queued again after a resume or a cancel (a set of
# ids, small: a resume empties it within a second); any worker's tick finishes the job
# of a resumer that died (worker.coordination.bulk_control).
WAKING = PREFIX + "bulks:waking"
# Timed work (worker.coordination.schedule): a zset of "start:<bulk id>" (a bulk submitted
# with --at) and "revert:<bulk id>" (--revert-after), scored by when it is due (ms,
# Redis's clock); any worker's once-a-second tick takes what is due.
SCHEDULE = PREFIX + "schedule"

# The HTTP API (httpapi): its callers' keys, and which caller made a job or a bulk.
API_KEYS = PREFIX + "apikeys"  # hash: key name -> sha256 of the key (never the key)


def _under(part: str) -> Callable[[str], str]:
    """Names `voicemail:<part>:<what>`."""
    return lambda what: f"{PREFIX}{part}:{what}"


def job(job_id: str) -> str:
    return JOB_PREFIX + job_id


def reaped(instance: str) -> str:
    return REAPED_PREFIX + instance


def intent(account: str) -> str:
    """The values an account should hold (its newest applied update), kept while a
    read-back of it is pending."""
    return f"{INTENT_PREFIX}{{{account}}}"


def account_state(account: str) -> str:
    """An account's ordering hash while an update of it is in flight (a hash tag: one
    Lua call may claim many accounts of one bulk chunk on a cluster's one slot)."""
    return f"{PREFIX}acct:{{{account}}}"


idempotency = _under("idem")
seq_pin = _under("seqpin")  # a by-name update's number, pinned to its job id
lock_waits = _under("lockwaits")  # a single update's re-queues waiting for a locked account
heartbeat = _under("hb")
held = _under("held")  # delivery tags a worker instance received and has not acknowledged
reap_lock = _under("reap")
notify_lock = _under("notify:lock")
token_rate = _under("rate:token")  # one token's bucket, named by a digest (never the token)


def api_key(digest: str) -> str:
    """An HTTP API key's record (name, accounts glob, created), found by the key's sha256."""
    return f"{PREFIX}apikey:{digest}"


def http_owner(job_or_bulk_id: str) -> str:
    """The name of the API key that enqueued a job or submitted a bulk over HTTP."""
    return f"{PREFIX}http:owner:{job_or_bulk_id}"


class BulkKeys:
    """The keys of one bulk (their layout: worker.coordination.bulk_records)."""

    def __init__(self, bulk_id: str) -> None:
        self.bulk_id = bulk_id
        base = f"{PREFIX}bulk:{{{bulk_id}}}"
        self.meta = base
        self.done = base + ":done"
        self.failures = base + ":failures"
        self.cancelled = base + ":cancelled"  # rows never sent: kept for `bulk retry`
        self.rate = base + ":rate"
        self.seen = base + ":seen"
        self.before = base + ":before"  # a revertible bulk's accounts as they were
        self.lines = base + ":lines"  # chunk number -> its lines, as runs "2-999,1001-1002"
        self.parked = base + ":parked"
        self.waking = base + ":waking"  # parked chunks handed out to be queued again
        self.held = base + ":held"  # chunks of waves not started yet (coordination.waves)
        self.reasons = base + ":reasons"  # failure reason -> rows, for --max-failures
        self.chunk_prefix = base + ":chunk:"

    def chunk(self, number: int) -> str:
        return f"{self.chunk_prefix}{number}"

    def record_keys(self) -> list[str]:
        """For `record_outcomes.lua`: every key of the bulk but its chunks, meta first
        (the outbox is a constant of the script), so that settling gives them all their
        TTL in one step."""
        return self.all()

    def all(self) -> list[str]:
        """Every key of the bulk but its chunks: meta, done, failures, rate, cancelled,
        before, seen, lines (8th: `record_outcomes.lua`), held and reasons (`waves.lua`
        finds them by name), then `parked` and `waking` last (`control.lua`)."""
        head = [self.meta, self.done, self.failures, self.rate, self.cancelled, self.before]
        return [*head, self.seen, self.lines, self.held, self.reasons, self.parked, self.waking]


# The journal of changes (worker.coordination.journal), when it lives in Redis.
JOURNAL_PREFIX = PREFIX + "journal:"


def journal_account(account: str) -> str:
    """zset: an account's journal entries scored by time (ms); the account's hash tag."""
    return f"{JOURNAL_PREFIX}acct:{{{account}}}"


def journal_bulk(bulk_id: str) -> str:
    """zset: a bulk's journal entries scored by line; the bulk's hash tag (BulkKeys)."""
    return f"{JOURNAL_PREFIX}bulk:{{{bulk_id}}}"
