"""Work-arounds for known bugs in the libraries under us, each with its reason.

kombu's Redis transport, on losing the broker connection with messages still
unacknowledged (reserved, or waiting for a countdown), tries to put them back in
their queues through the connection that is already gone, and the worker dies
with `AttributeError: 'NoneType' object has no attribute 'hostname'` instead of
reconnecting (the kombu issues "Error on Restarting Celery" and "Error on
restarting Gossip" show the same trace). Those messages are still safe in
Redis's `unacked` hash, and the lease thread gives them back (worker.queue.liveness),
so we let the restore fail quietly and the worker reconnect. The same goes for `ack`
and `reject` of a message that finishes after its connection was lost: kombu raises
the same AttributeError and Celery stops the worker as "unrecoverable" (seen in
benchmarks/recovery.py when Redis restarts under a running bulk chunk). Only that
AttributeError, with the channel's connection gone, is forgiven.

Written for kombu 5.7, whose `QoS.restore_unacked(self, client=None)` walks
`self._delivered`; `install()` checks that shape and refuses to patch anything else.
Installed only in worker processes (`worker.queue.process`), never by a producer.
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


def _has_expected_shape() -> bool:
    qos = kombu_redis.QoS
    try:
        params = list(inspect.signature(qos.restore_unacked).parameters)
    except (TypeError, ValueError):
        return False
    # restore_by_tag: the lease thread gives back held messages with it (process.restore).
    return params == ["self", "client"] and all(
        hasattr(qos, name) for name in ("_delivered", "restore_by_tag", "ack", "reject")
    )


def install() -> None:
    qos = kombu_redis.QoS
    if getattr(qos.restore_unacked, "__voicemail_patched__", False):
        return
    if not _has_expected_shape():
        raise RuntimeError(
            f"kombu {version('kombu')}: QoS.restore_unacked is not the method the work-around"
            " in worker/queue/compat.py was written for (kombu 5.7); check it again"
        )
    qos.restore_unacked = _tolerant(qos.restore_unacked)  # type: ignore[method-assign]
    qos.ack = _tolerant_settle(qos.ack)  # type: ignore[method-assign]
    qos.reject = _tolerant_settle(qos.reject)  # type: ignore[method-assign]
