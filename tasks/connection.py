"""What the producer API publishes and reads with: one `Connection` (settings, a Celery app
of ours, a Redis client, the credential store), and which one is in use.

The module-level producer functions (`tasks.producer`, `tasks.bulk`) work on `current()`:
the connection a `Producer` made active (`Producer.use()`, which every method of it
does), else the default one, built on first use from the environment (REDIS_URL,
CELERY_BROKER_URL, CELERY_RESULT_BACKEND). Nothing here touches the host process: the app
is never made current, no signal is connected, nothing is patched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import kombu.exceptions
import redis
from celery import Celery

from worker.core.errors import QueueUnavailable
from worker.core.settings import Settings, get_settings
from worker.queue import app as queue_app
from worker.store.credentials import CredentialStore

from .idempotency import JOB_LEASE, IdempotencyKey


def safe_url(url: str) -> str:
    """`url` with its password starred out, fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Connection:
    """A producer's settings, Celery app and Redis client; the store is opened on first use."""

    def __init__(self, settings: Settings, celery: Celery, client: redis.Redis) -> None:
        self.settings = settings
        self.app = celery
        self.redis = client

    @functools.cached_property
    def store(self) -> CredentialStore:
        return CredentialStore.from_settings(self.settings, self.redis)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn an unreachable Redis (or broker) into `QueueUnavailable`, naming the URL."""
        try:
            yield
        except (
            redis.ConnectionError,
            redis.TimeoutError,
            kombu.exceptions.OperationalError,
        ) as exc:
            url = safe_url(self.settings.redis_url)
            raise QueueUnavailable(f"cannot reach Redis at {url}: {exc}") from None

    def publish(self, task: str, args: list[Any], **options: Any) -> str:
        """Record the job (so `poll` knows the id), then send it; returns its id."""
        return queue_app.publish(self.app, self.redis, task, args, **options)

    def send_chunk(self, bulk_id: str, number: int, retries: int = 0, what: str = "") -> None:
        queue_app.send_chunk(bulk_id, number, retries, what, celery=self.app, client=self.redis)

    def close(self) -> None:
        self.app.close()
        self.redis.close()


_active: ContextVar[Connection | None] = ContextVar("voicemail_producer", default=None)


@functools.cache
def default() -> Connection:
    """The process's default connection, from the environment, made on first use."""
    connections = queue_app.producer_connections()
    return Connection(connections.settings, queue_app.default_app(), connections.redis)


def current() -> Connection:
    return _active.get() or default()


@contextmanager
def active(connection: Connection) -> Iterator[Connection]:
    """Make `connection` the one the producer functions use, in this thread or task."""
    token = _active.set(connection)
    try:
        yield connection
    finally:
        _active.reset(token)


def redis_client() -> redis.Redis:
    """The client for REDIS_URL (job records, idempotency keys, bulk records)."""
    return current().redis


def credential_store() -> CredentialStore:
    return current().store


@contextmanager
def redis_errors() -> Iterator[None]:
    with current().errors():
        yield


@contextmanager
def once(
    key: str | None, new_id: str, *, lease: float = JOB_LEASE
) -> Iterator[IdempotencyKey | str | None]:
    """With an idempotency key: the id already queued for it (a `str`), or, the first
    time, the key itself (claimed for `new_id`; the caller queues the work and `once`
    settles it). Without one: None. Queueing that fails drops the claim again, so a
    retried call is never told about work that never was; a caller that dies before
    settling leaves a claim that lapses after `lease` seconds (tasks/idempotency.py)."""
    if key is None:
        yield None
        return
    expires = current().settings.result_expires
    idem = IdempotencyKey(redis_client(), key, lease, expires)
    found = idem.wait_settled(new_id, lease + 1) if lease <= JOB_LEASE else idem.claim(new_id)
    if found.state in ("done", "busy"):
        yield found.id
        return
    try:
        yield idem
    except BaseException:
        idem.drop(new_id)
        raise
    idem.settle(new_id)


def settings_for(
    base: Settings | None, redis_url: str | None, broker_url: str | None, backend: str | None
) -> Settings:
    """`base` (else the environment's) with the URLs given replacing its own."""
    base = base or get_settings()
    update: dict[str, Any] = {}
    if redis_url:
        update["redis_url"] = redis_url
    if broker_url or redis_url:
        update["broker_url_override"] = broker_url or redis_url
    if backend or broker_url or redis_url:
        update["result_backend_override"] = backend or broker_url or redis_url
    return base.model_copy(update=update)


def url_of(client: redis.Redis) -> str:
    """A URL for the server `client` talks to (its host, port, db and credentials)."""
    kw = client.connection_pool.connection_kwargs
    db = kw.get("db", 0)
    auth = ""
    if kw.get("password"):
        auth = f"{quote(kw.get('username') or '', safe='')}:{quote(kw['password'], safe='')}@"
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={db}"
    scheme = "rediss" if "SSL" in client.connection_pool.connection_class.__name__ else "redis"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"
