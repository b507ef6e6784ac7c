"""The heartbeat thread: one per worker, once a second, writes the heartbeat and nothing else.

Other workers reap an instance whose heartbeat is older than `HEARTBEAT_TTL` (4 s): they
give back every delivery it holds and refuse its claims. So the heartbeat must never wait
behind other work: renewing tens of thousands of held deliveries, reading kombu's whole
`unacked` hash, republishing lost jobs or sending bulk notifications (the lease thread's
work, `worker.queue.lease`) once took a tick past 4 s, and a live worker was reaped while
its bulk engine went on sending. Here a thread of its own, with a Redis client of its own,
does one small call a second (`beat.lua`), and one more that looks for a Redis that lost
its data (`continuity.lua`), so it is noticed within a second, on reconnect included.
"""

from __future__ import annotations

import logging
import threading

import redis

from ..core.connections import redis_client
from .continuity import Continuity
from .liveness import Liveness

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    interval = 1.0

    def __init__(self, url: str, liveness: Liveness) -> None:
        super().__init__(name="voicemail-heartbeat", daemon=True)
        # Its own client and connection: never queued behind another thread's call.
        self._client = redis_client(url, socket_timeout=1.5, socket_connect_timeout=1.5)
        self._liveness = liveness
        self.continuity = Continuity()
        self._stop_event = threading.Event()
        self._failing = False

    def beat(self) -> None:
        try:
            self._liveness.beat(self._client)
            self.continuity.check(self._client)
        except redis.RedisError as exc:
            if not self._failing:
                logger.warning("heartbeat: Redis did not answer: %s", exc)
            self._failing = True
        except Exception:  # whatever it is, the next beat must still happen
            logger.exception("heartbeat failed; carrying on")
        else:
            self._failing = False

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=3)
        self._client.close()
