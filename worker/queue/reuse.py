"""One `redis.Redis` per kombu channel instead of one per command: a speed fix.

kombu 5.7's Redis channel builds a new `redis.Redis` for every command outside its BRPOP
client (`Channel._create_client`, through `conn_or_acquire`): each publish, event,
delivery record and ack. redis-py 8 fills a case-insensitive dict of a few hundred
response callbacks in `Redis.__init__`, about 130 us of CPU on a 2-core machine here, as
much as the round trip itself, five times per job, on the worker's consumer thread. A
`redis.Redis` over a pool is safe to share between threads (each command takes a
connection from the pool), so each channel keeps one per pool, and builds it again when
kombu replaces the pool (after a lost connection).

Written for kombu 5.7 (`Channel._create_client(self, asynchronous=False)` and the
`pool` property); `reuse_clients()` checks that shape and refuses to patch anything
else. Installed by worker and producer alike, when `worker.queue.app` builds the app.
"""

from __future__ import annotations

import functools
import inspect
from importlib.metadata import version
from typing import Any

from kombu.transport import redis as kombu_redis


def _reusing(create: Any) -> Any:
    @functools.wraps(create)
    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:  # kombu caches that one itself (`Channel.client`)
            return create(self, asynchronous)
        pool = self.pool
        cached = self.__dict__.get("_voicemail_client")
        if cached is None or cached[0] is not pool:
            cached = self.__dict__["_voicemail_client"] = (pool, create(self, False))
        return cached[1]

    _create_client.__voicemail_patched__ = True  # type: ignore[attr-defined]
    return _create_client


def _creates_plain_clients() -> bool:
    channel: Any = kombu_redis.Channel
    try:
        params = list(inspect.signature(channel._create_client).parameters)
    except (TypeError, ValueError):
        return False
    return params == ["self", "asynchronous"] and isinstance(
        inspect.getattr_static(channel, "pool"), property
    )


def reuse_clients() -> None:
    """One `redis.Redis` per kombu channel and pool instead of one per command (idempotent)."""
    channel: Any = kombu_redis.Channel
    if getattr(channel._create_client, "__voicemail_patched__", False):
        return
    if not _creates_plain_clients():
        raise RuntimeError(
            f"kombu {version('kombu')}: Channel._create_client is not the method"
            " worker/queue/reuse.py was written for (kombu 5.7); check it again"
        )
    channel._create_client = _reusing(channel._create_client)
