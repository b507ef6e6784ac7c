"""The two kombu patches, each with its reason; both written for kombu 5.7 and checked
against the installed kombu before they patch anything (`_require`).

1. Settling on a lost connection (`install_settle_patch`, worker processes only).
   kombu's Redis transport, on losing the broker connection with messages still
   unacknowledged (reserved, or waiting for a countdown), tries to put them back in their
   queues through the connection that is already gone, and the worker dies with
   `AttributeError: 'NoneType' object has no attribute 'hostname'` instead of
   reconnecting (the kombu issues "Error on Restarting Celery" and "Error on restarting
   Gossip" show the same trace). Those messages are still safe in Redis's `unacked` hash,
   and the lease thread gives them back (worker.queue.liveness), so we let the restore
   fail quietly and the worker reconnect. The same goes for `ack` and `reject` of a
   message that finishes after its connection was lost: kombu raises the same
   AttributeError and Celery stops the worker as "unrecoverable" (seen in
   benchmarks/recovery.py when Redis restarts under a running bulk chunk). Only that
   AttributeError, with the channel's connection gone, is forgiven. Written for
   `QoS.restore_unacked(self, client=None)`, which walks `self._delivered`.

2. One `redis.Redis` per channel (`reuse_clients`, a speed fix). kombu 5.7's Redis
   channel builds a new `redis.Redis` for every command outside its BRPOP client
   (`Channel._create_client`, through `conn_or_acquire`): each publish, event, delivery
   record and ack. redis-py 8 fills a case-insensitive dict of a few hundred response
   callbacks in `Redis.__init__`, about 130 us of CPU on a 2-core machine here, as much
   as the round trip itself, five times per job. A `redis.Redis` over a pool is safe to
   share between threads (each command takes a connection from the pool), so each
   channel keeps one per pool, and builds it again when kombu replaces the pool. Written
   for `Channel._create_client(self, asynchronous=False)` and the `pool` property.
"""

from __future__ import annotations

import functools
import inspect
import logging
from importlib.metadata import version
from typing import Any

from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


def _channel_gone(qos: Any) -> bool:
    """The one AttributeError we forgive: the channel's connection is already closed (the
    transport dropped it, or kombu's Connection lost its client)."""
    connection = getattr(getattr(qos, "channel", None), "connection", None)
    return connection is None or getattr(connection, "client", None) is None


def _tolerant(restore: Any) -> Any:
    @functools.wraps(restore)
    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return restore(self, client)
        except AttributeError:
            if not _channel_gone(self):
                raise
            logger.warning(
                "broker connection lost holding %d unacknowledged message(s); they stay in "
                "Redis and the lease thread gives them back",
                len(self._delivered),
            )
            self._delivered.clear()
            return None

    restore_unacked.__voicemail_patched__ = True  # type: ignore[attr-defined]
    return restore_unacked


def _tolerant_settle(settle: Any) -> Any:
    """`ack`/`reject` of a message received on a connection that is gone since: kombu
    raises AttributeError and Celery stops the worker as "unrecoverable". The message is
    still in Redis's `unacked` hash; the lease thread forgets it (its job has a result)
    or gives it back (worker.queue.liveness)."""

    @functools.wraps(settle)
    def tolerant(self: Any, delivery_tag: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return settle(self, delivery_tag, *args, **kwargs)
        except AttributeError:
            if not _channel_gone(self):
                raise
            logger.warning(
                "could not %s message %s: its broker connection is gone",
                settle.__name__,
                delivery_tag,
            )
            return None

    tolerant.__voicemail_patched__ = True  # type: ignore[attr-defined]
    return tolerant


def settle_patch_fits() -> bool:
    qos = kombu_redis.QoS
    try:
        params = list(inspect.signature(qos.restore_unacked).parameters)
    except (TypeError, ValueError):
        return False
    # restore_by_tag: the lease thread gives back held messages with it (liveness).
    return params == ["self", "client"] and all(
        hasattr(qos, name) for name in ("_delivered", "restore_by_tag", "ack", "reject")
    )


def install_settle_patch() -> None:
    qos = kombu_redis.QoS
    if getattr(qos.restore_unacked, "__voicemail_patched__", False):
        return
    _require(settle_patch_fits(), "QoS.restore_unacked")
    qos.restore_unacked = _tolerant(qos.restore_unacked)  # type: ignore[method-assign]
    qos.ack = _tolerant_settle(qos.ack)  # type: ignore[method-assign]
    qos.reject = _tolerant_settle(qos.reject)  # type: ignore[method-assign]


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


def client_reuse_fits() -> bool:
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
    _require(client_reuse_fits(), "Channel._create_client")
    channel._create_client = _reusing(channel._create_client)


def _require(fits: bool, method: str) -> None:
    if not fits:
        raise RuntimeError(
            f"kombu {version('kombu')}: {method} is not the method worker/queue/"
            "kombu_patches.py was written for (kombu 5.7); check it again"
        )
