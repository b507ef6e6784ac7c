"""Redis connections from URLs: redis://, rediss://, unix://, and sentinel:// for Sentinel.

Sentinel URLs are written as kombu and Celery write them: one `sentinel://host:port`
per sentinel, joined by `;`, the database on any of them, the master's name in
`VOICEMAIL_SENTINEL_MASTER`. Celery's broker and result backend get the same
master name through their transport options (worker.queue.app).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from .settings import get_settings

TIMEOUTS: Mapping[str, Any] = MappingProxyType(
    {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
)


def text(value: Any) -> str:
    """A Redis reply as str (clients here do not decode responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def is_sentinel(url: str) -> bool:
    return url.startswith("sentinel://")


def _sentinels(url: str) -> tuple[list[tuple[str, int]], int, str | None]:
    hosts: list[tuple[str, int]] = []
    db, password = 0, None
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        hosts.append((parts.hostname or "127.0.0.1", parts.port or 26379))
        if parts.path.strip("/"):
            db = int(parts.path.strip("/"))
        password = parts.password or password
    return hosts, db, password


def master_name() -> str:
    return get_settings().sentinel_master


def _connect(url: str, overrides: dict[str, Any], client_class: Any, sentinel_class: Any) -> Any:
    """A client for `url`, blocking or asyncio as the classes given are; a sentinel:// URL
    reaches the master through its sentinels."""
    options = {**TIMEOUTS, **overrides}
    if not is_sentinel(url):
        return client_class.from_url(url, **options)
    hosts, db, password = _sentinels(url)
    sentinel = sentinel_class(hosts, sentinel_kwargs={"socket_timeout": 5, "password": password})
    return sentinel.master_for(master_name(), db=db, password=password, **options)


def redis_client(url: str, **overrides: Any) -> redis.Redis:
    client: redis.Redis = _connect(url, overrides, redis.Redis, Sentinel)
    return client


def async_redis_client(url: str, **overrides: Any) -> aioredis.Redis:
    client: aioredis.Redis = _connect(url, overrides, aioredis.Redis, AsyncSentinel)
    return client
