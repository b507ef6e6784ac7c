"""The lease thread: one per worker, once a second, keeps the worker's claims alive.

kombu's Redis transport keeps each delivered, unacknowledged message in the
`unacked` hash with its delivery time in the `unacked_index` sorted set, and
puts it back in its queue once it is older than `visibility_timeout`. This thread
stamps "now" on every message the worker holds (running, reserved or waiting for an
ETA; `celery.worker.state.scheduled_requests` needs Celery 5.7), so that timeout
(`VOICEMAIL_VISIBILITY_TIMEOUT`, 60 s) is only the last resort. What brings a dead
worker's messages back within seconds is the heartbeat (`worker.queue.liveness`): this
thread records what the worker holds and reaps the dead, with the sweep for lost jobs
(`worker.queue.recovery`) and the flush of request statistics, while the heartbeat
itself beats in a thread of its own (`worker.queue.heartbeat`), so however long a tick
takes, the worker never looks dead. Nothing that goes wrong in a tick stops it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery.worker import state

from ..core.connections import redis_client
from . import recovery
from .heartbeat import Heartbeat
from .liveness import UNACKED_INDEX, Liveness

logger = logging.getLogger(__name__)


def held_delivery_tags() -> set[str]:
    """The deliveries Celery still holds. A request it finished is not one of them, even
    when a list still names it: `Consumer.on_close` puts its snapshot of the running
    requests back into `reserved_requests` after the broker connection went, and a job
    that ended in between (its `task_ready` already done) stays there for good, its lease
    renewed here forever and its message never given back. Finished, it has left
    `state.requests`, which every live request is in."""
    tags: set[str] = set()
    groups = (state.active_requests, state.reserved_requests, state.scheduled_requests)  # type: ignore[attr-defined]
    live: dict[Any, Any] = state.requests
    for group in groups:
        for request in list(group):
            if live.get(getattr(request, "id", None)) is not request:
                continue
            tag = getattr(getattr(request, "message", None), "delivery_tag", None)
            if tag:
                tags.add(str(tag))
    return tags


def renew(client: Any, tags: Iterable[str], now: float | None = None) -> int:
    """Stamp the held deliveries with Redis's clock (any worker may compare the stamps)."""
    tags = list(tags)
    if not tags:
        return 0
    stamp = recovery.redis_now(client) if now is None else now
    mapping = {tag: stamp for tag in tags}
    # XX: only renew entries still there; an acked message must not come back.
    return int(client.zadd(UNACKED_INDEX, mapping, xx=True, ch=True))


class LeaseKeeper(threading.Thread):
    """Renews leases, beats and reaps (`Liveness`), sweeps for lost jobs, runs `tick`."""

    interval = 1.0

    def __init__(
        self,
        settings: Any,
        *,
        instance: str,
        reborn: Callable[[], str],
        node: str,
        republish: Callable[[dict[str, Any], str], None],
        restore: Callable[[Iterable[str]], None],
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="voicemail-lease", daemon=True)
        self._republish = republish
        self._tick = tick
        clients: dict[str, redis.Redis] = {}
        for url in (settings.broker_url, settings.redis_url, settings.result_backend):
            if url not in clients:
                clients[url] = redis_client(url, socket_timeout=2, socket_connect_timeout=2)
        self._client = clients[settings.broker_url]
        self._store = clients[settings.redis_url]
        self._results = clients[settings.result_backend]
        self._clients = list(clients.values())
        self.liveness = Liveness(
            self._store,
            self._client,
            self._results,
            instance=instance,
            node=node,
            restore=restore,
            reborn=reborn,
        )
        self.heartbeat = Heartbeat(settings.redis_url, self.liveness)
        self._stop_event = threading.Event()

    def start(self) -> None:
        """Beat at once (before the first job, not a second after), then both threads."""
        self.heartbeat.beat()
        self.heartbeat.start()
        super().start()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            held = held_delivery_tags()
            renew(self._client, held)
            self.liveness.tick(held)
            recovery.sweep(self._store, self._republish, broker=self._client, results=self._results)
            self._tick()
        except redis.RedisError as exc:
            self.liveness.failed()
            logger.warning("lease thread: Redis did not answer: %s", exc)
        except Exception:  # whatever it is, the next tick must still run
            logger.exception("lease thread: tick failed; carrying on")

    def stop(self) -> None:
        self._stop_event.set()
        self.heartbeat.stop()  # first: it must not beat again after `leave`
        try:
            self.liveness.leave()
        except Exception:  # shutting down with Redis gone: the heartbeat lapses by itself
            logger.debug("could not stop the heartbeat", exc_info=True)
        for client in self._clients:
            client.close()
