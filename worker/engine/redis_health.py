"""Is Redis answering? Watched twice a second while a chunk runs.

A row's outcome lives in Redis: a PATCH sent while Redis is away could not be recorded,
and a redelivery would send it again. So within a second of Redis going quiet the
chunk starts no new request, keeps the outcomes it has, and goes on once Redis answers
(or gives up after `MAX_WAIT` and lets the chunk be retried).

Redis may also come back without its data (a restart without persistence, a failover to
a replica that lagged), its claims gone: the epoch key (`worker.queue.continuity`), read
with the bulk's flags (`worker.engine.halt`), tells, and every claim taken before is
checked again and its account read before sending.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

PROBE_EVERY = 0.5
PROBE_TIMEOUT = 0.5
MAX_WAIT = 120.0
_UNSEEN = object()


class RedisHealth:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._up = asyncio.Event()
        self._up.set()
        # Bumped each time Redis comes back: a claim taken in an earlier epoch is checked
        # again before its request is sent (another worker may have taken over meanwhile).
        self.epoch = 0
        # The last epoch in which Redis was found to have lost its data: a claim from
        # before it is checked again, and its account read before sending.
        self.lost_in = 0
        self._data_epoch: bytes | object | None = _UNSEEN

    def saw_data_epoch(self, value: bytes | str | None) -> bool:
        """The epoch key's value as read now; True when it shows Redis lost its data
        since the last look (another value, or gone). A key found gone and then written
        again is one loss, not two."""
        before, self._data_epoch = self._data_epoch, value
        if before is _UNSEEN or before is None or value == before:
            return False
        self.epoch += 1
        self.lost_in = self.epoch
        return True

    def down(self) -> None:
        self._up.clear()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def _set_up(self) -> None:
        if not self._up.is_set():
            self.epoch += 1
            self._up.set()

    async def wait_up(self) -> None:
        if self._up.is_set():
            return
        try:
            async with asyncio.timeout(MAX_WAIT):
                await self._up.wait()
        except TimeoutError:
            raise ConnectionError(f"Redis did not answer for {MAX_WAIT:.0f}s") from None

    async def watch(self) -> None:
        """Probe Redis (even with no rate limit calling it per request) until cancelled."""
        while True:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self._client.ping()
            except Exception:  # any failure to answer in time counts as down
                if self._up.is_set():
                    logger.warning("Redis is not answering: no new requests until it does")
                self._up.clear()
            else:
                self._set_up()
            await asyncio.sleep(PROBE_EVERY)
