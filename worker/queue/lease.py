"""Keep the broker from handing a live worker's messages to someone else.

kombu's Redis transport keeps each delivered, unacknowledged message in the
`unacked` hash with its delivery time in the `unacked_index` sorted set, and
puts it back in its queue once it is older than `visibility_timeout`. A long
timeout means a job held by a killed worker waits that long (an hour by
default); a short one means a job still running, or waiting for its countdown,
is handed out twice. So the timeout is short (`VOICEMAIL_VISIBILITY_TIMEOUT`,
60 s) and this thread renews the lease: every quarter of it, it stamps "now" on
every message the worker holds (running, reserved or waiting for an ETA).
A worker that dies stops renewing, and its messages come back within the
timeout plus one restore sweep (`unacked_restore_interval`, 5 s).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery.worker import state

from ..core.connections import redis_client
from . import recovery

logger = logging.getLogger(__name__)

UNACKED_INDEX = "unacked_index"  # kombu's default `unacked_index_key`


def held_delivery_tags() -> set[str]:
    tags: set[str] = set()
    groups = (state.active_requests, state.reserved_requests, state.scheduled_requests)  # type: ignore[attr-defined]
    for group in groups:
        for request in list(group):
            tag = getattr(getattr(request, "message", None), "delivery_tag", None)
            if tag:
                tags.add(str(tag))
    return tags


def renew(client: Any, tags: Iterable[str], now: float | None = None) -> int:
    stamp = time.time() if now is None else now
    mapping = {tag: stamp for tag in tags}
    if not mapping:
        return 0
    # XX: only renew entries still there; an acked message must not come back.
    return int(client.zadd(UNACKED_INDEX, mapping, xx=True, ch=True))


class LeaseKeeper(threading.Thread):
    """Renews leases, sweeps for lost jobs (`recovery`) and runs `tick` (statistics)."""

    def __init__(
        self,
        settings: Any,
        republish: Callable[[dict[str, Any], str], None],
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="voicemail-lease", daemon=True)
        self._republish = republish
        self._tick = tick
        self.interval = min(max(settings.visibility_timeout / 4, 0.5), 5.0)
        clients: dict[str, redis.Redis] = {}
        for url in (settings.broker_url, settings.redis_url, settings.result_backend):
            if url not in clients:
                clients[url] = redis_client(url, socket_timeout=5)
        self._client = clients[settings.broker_url]
        self._store = clients[settings.redis_url]
        self._results = clients[settings.result_backend]
        self._clients = list(clients.values())
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                renew(self._client, held_delivery_tags())
                recovery.sweep(
                    self._store, self._republish, broker=self._client, results=self._results
                )
                self._tick()
            except redis.RedisError as exc:
                logger.warning("could not renew message leases: %s", exc)

    def stop(self) -> None:
        self._stop_event.set()
        for client in self._clients:
            client.close()
