"""Work-arounds for known bugs in the libraries under us, each with its reason.

kombu's Redis transport, on losing the broker connection with messages still
unacknowledged (reserved, or waiting for a countdown), tries to put them back in
their queues through the connection that is already gone, and the worker dies
with `AttributeError: 'NoneType' object has no attribute 'hostname'` instead of
reconnecting (the kombu issues "Error on Restarting Celery" and "Error on
restarting Gossip" show the same trace). Those messages are still safe in
Redis's `unacked` hash, and the visibility sweep puts them back once their
lease runs out (see worker.lease), so we let the restore fail quietly and the
worker reconnect.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


def _tolerant(restore: Any) -> Any:
    @functools.wraps(restore)
    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return restore(self, client)
        except AttributeError:
            logger.warning(
                "broker connection lost holding %d unacknowledged message(s); they stay in "
                "Redis and are delivered again when their lease runs out",
                len(self._delivered),
            )
            self._delivered.clear()
            return None

    restore_unacked.__voicemail_patched__ = True  # type: ignore[attr-defined]
    return restore_unacked


def install() -> None:
    qos = kombu_redis.QoS
    if not getattr(qos.restore_unacked, "__voicemail_patched__", False):
        qos.restore_unacked = _tolerant(qos.restore_unacked)  # type: ignore[method-assign]
