"""One `WorkerContext` per worker process: everything it uses, built once, closed once.

Built at worker start by `worker.queue.worker_signals` (`worker_init` in the worker's
main process, whatever the pool; `worker_process_init` again in each prefork child) and
handed to jobs and to the worker-side handlers through `current()`, as arq hands its
`ctx` to every job. Holds the settings, the Redis client for REDIS_URL, the credential
store, the blocking API client with its limiter, breaker and statistics, the ordering
scripts with the renewer of held account locks, the journal, the bulk engine, and, in the main
process once the worker is ready, the lease thread.

A worker process uses this and nothing else: the producer's holder
(`worker.queue.app.producer_connections`) is never built in one.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
from dataclasses import dataclass

import redis

from ..api.client import PlusofonClient
from ..coordination import stats as request_stats
from ..coordination.breaker import Breaker
from ..coordination.journal import Journal, open_journal
from ..coordination.ordering import LockRenewer, Ordering
from ..coordination.ratelimit import RateLimiter
from ..coordination.readback import ReadBack
from ..coordination.stats import Stats
from ..core.connections import redis_client
from ..core.settings import Settings
from ..engine.pool import Engine
from ..store.credentials import CredentialStore
from .lease import LeaseKeeper
from .liveness import new_instance_id
from .readback_reader import ReadBackReader

logger = logging.getLogger(__name__)

# This worker process instance: made when the worker side is installed, before a prefork
# pool forks. It lives in shared memory (an anonymous shared mapping the children inherit),
# so when the main process goes on under a new identity (`new_instance`, after it was
# found dead) every child fences its account locks with the new one at once: a module
# global would change in the main process only, and the children would go on claiming
# as the dead instance, refused every time. A sequence counter (odd while written) lets a
# reader take a consistent copy without a lock a killed child could leave held.
_ID_BYTES = 16
_shared_id = multiprocessing.RawArray(ctypes.c_char, _ID_BYTES)
_shared_generation = multiprocessing.RawValue(ctypes.c_uint64, 0)


def _publish(value: str) -> str:
    raw = value.encode("ascii")
    if len(raw) != _ID_BYTES:
        raise ValueError(f"an instance id is {_ID_BYTES} characters, got {value!r}")
    _shared_generation.value += 1  # odd: being written
    _shared_id.raw = raw
    _shared_generation.value += 1
    return value


def instance() -> str:
    """This worker's current instance, the same in the main process and every child."""
    while True:
        before = _shared_generation.value
        raw = _shared_id.raw
        if before % 2 == 0 and _shared_generation.value == before:
            return raw.decode("ascii")


def new_instance() -> str:
    """Found dead by another worker (cut off longer than its heartbeat): its deliveries were
    given back and its old claims are refused, so it goes on under a new identity, in the
    main process and in every prefork child alike."""
    return _publish(new_instance_id())


_publish(new_instance_id())


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    store: CredentialStore
    client: PlusofonClient
    stats: Stats
    engine: Engine
    ordering: Ordering
    locks: LockRenewer
    readback: ReadBack
    journal: Journal
    # False in a prefork pool's main process: its children run the jobs, each with its own.
    runs_jobs: bool = True
    # The main process's lease thread, from the moment the worker is ready.
    lease: LeaseKeeper | None = None
    # The main process's read-back reader, from the moment the worker is ready.
    reader: ReadBackReader | None = None

    @property
    def instance(self) -> str:
        return instance()

    @classmethod
    def build(cls, settings: Settings, *, runs_jobs: bool = True) -> WorkerContext:
        client = redis_client(settings.redis_url)
        stats = Stats()
        ordering = Ordering.for_settings(client, settings)
        return cls(
            runs_jobs=runs_jobs,
            settings=settings,
            redis=client,
            store=CredentialStore.from_settings(settings, client),
            client=PlusofonClient(
                settings,
                limiter=RateLimiter(client, settings.rate_limit, settings.token_rate_limit),
                breaker=Breaker(client, settings),
                stats=stats,
            ),
            stats=stats,
            engine=Engine(settings),
            ordering=ordering,
            locks=LockRenewer(ordering),
            readback=ReadBack(client, after=settings.verify_after, ttl=settings.ordering_ttl),
            journal=open_journal(settings, client),
        )

    def flush_stats(self, *, force: bool = False) -> None:
        """Request counts reach Redis about once a second (`voicemail metrics` reads them)."""
        try:
            request_stats.flush(self.redis, self.stats, force=force)
        except redis.RedisError:
            logger.debug("could not flush request statistics", exc_info=True)

    def close(self) -> None:
        if self.lease is not None:
            self.lease.stop()
        if self.reader is not None:
            self.reader.stop()
        self.locks.stop()
        self.flush_stats(force=True)
        self.engine.shutdown()
        self.client.close()
        if (close := getattr(self.journal, "close", None)) is not None:
            close()  # PostgreSQL's connection
        self.redis.close()


_current: WorkerContext | None = None


def start(settings: Settings, *, fresh: bool = False, runs_jobs: bool = True) -> WorkerContext:
    """Build this process's context once; a second call keeps the first.

    `fresh` (a prefork child) drops a context inherited from the parent without closing
    it: its sockets, engine and lease thread belong to the parent.
    """
    global _current
    if _current is None or fresh:
        _current = WorkerContext.build(settings, runs_jobs=runs_jobs)
    return _current


def current() -> WorkerContext:
    """This worker process's context; jobs run only after the worker built it."""
    if _current is None:
        raise RuntimeError(
            "no worker context in this process: tasks run in a worker started with "
            "`celery -A worker worker`"
        )
    return _current


def started() -> WorkerContext | None:
    return _current


def stop() -> None:
    global _current
    ctx, _current = _current, None
    if ctx is not None:
        ctx.close()
