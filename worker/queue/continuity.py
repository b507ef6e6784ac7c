"""Redis that lost its data: noticed within a second, and the update counter put back.

A Redis restarted without persistence, or a replica promoted while it lagged, has lost
what the workers wrote: account locks and claims, applied numbers, and the update
counter. Numbers come from Redis's clock, so a Redis whose clock is behind the old one's
would hand out numbers below those already given to updates still running or queued
elsewhere, and a newer update would lose to an older one.

Once a second the heartbeat thread (`worker.queue.heartbeat`) runs `continuity.lua`:

- `voicemail:epoch` is written once, by the first worker, and never expires: gone, or
  another, means the data went; a counter below the highest value this worker read
  means writes went (a failover that lost the last second);
- then the counter is reseeded above the highest value read, plus `MARGIN_US` for the
  numbers handed out since the last look, and above Redis's clock; one line is logged.

What was claimed before is checked again by whoever holds it: a running chunk reads the
epoch with its bulk's flags (`worker.engine.halt`), re-claims every row before its next
request and reads each account before sending (`worker.engine.chunk_run`); a single job
finds its lock gone before its next attempt and is re-queued (`tasks.voicemail`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from ..core import keys, lua
from ..core.connections import text

logger = logging.getLogger(__name__)

# Numbers handed out between two looks (a second apart) stay below the reseeded counter:
# a minute of the clock's microseconds, more than even a 10,000,000-row bulk takes.
MARGIN_US = 60_000_000
_CONTINUITY = lua.load(__package__, "continuity.lua")


class Continuity:
    """One worker's memory of its Redis: the epoch it saw, and the highest counter."""

    def __init__(self) -> None:
        self.epoch = ""
        self.highest = 0

    def check(self, client: Any) -> str:
        """One look; returns why Redis lost its data, or '' when it did not."""
        script = client.register_script(_CONTINUITY)
        epoch, counter, why = script(
            keys=[keys.EPOCH, keys.SEQ],
            args=[self.epoch, self.highest, uuid.uuid4().hex, MARGIN_US],
        )
        seen, self.epoch = self.highest, text(epoch)
        self.highest = max(self.highest, int(counter))
        if why:
            logger.error(
                "Redis lost its data (%s): claims taken before it are taken again, and "
                "running bulk rows read before sending; the update counter is reseeded "
                "to %d, above %d, the highest number seen",
                text(why),
                self.highest,
                seen,
            )
        return text(why)
