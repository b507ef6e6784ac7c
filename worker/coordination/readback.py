"""Read-back after ambiguous answers: the vendor ends holding the newest update's values.

A PATCH whose attempt timed out, was cut off after sending, or got a gateway's 5xx may
still be applied by the vendor, late, after a newer update of the same account went
through: the older values would win and every record would say otherwise. The vendor
has no conditional writes, so nothing can stop a late landing; it can be noticed.

1. Any ambiguous attempt of any update of an account schedules a read-back of it
   `VOICEMAIL_VERIFY_AFTER` seconds later (`schedule`, in the `readback` zset, scored on
   Redis's clock; a later ambiguity pushes it later).
2. While it is pending, each applied update of the account records itself as the
   account's intent (`release.lua`, in the same call that releases its lock): its
   number, values and who asked for it. An update that failed for good never does.
3. When it is due, any worker takes it (`take_due`, leased so a worker that dies leaves
   it to another), locks the account against updates for the moment, reads it and, when
   the vendor does not hold the intent's values, PATCHes them again: a correction.

Nothing here costs anything unless an answer was ambiguous: a clean run schedules no
read-back and records no intent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import keys, lua
from ..core.connections import text

_CONSTANTS = {"INTENT_PREFIX": keys.INTENT_PREFIX}
_SCHEDULE = lua.load(__package__, "readback_schedule.lua", _CONSTANTS)
_TAKE = lua.load(__package__, "readback_take.lua", _CONSTANTS)
_DONE = lua.load(__package__, "readback_done.lua", _CONSTANTS)


@dataclass(frozen=True)
class Intent:
    """What an account should hold: its newest applied update while a read-back was
    pending, and the update whose attempt was ambiguous."""

    seq: int
    send: bool
    email: str
    ref: str  # job:<id> or bulk:<id>:<line>
    ambiguous_ref: str

    @classmethod
    def from_hash(cls, flat: Sequence[Any]) -> Intent | None:
        fields = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
        if "s" not in fields:  # nothing applied since: there is nothing to put back
            return None
        return cls(
            int(fields["s"]), fields["v"] == "1", fields["e"], fields["r"], fields.get("a", "")
        )

    @property
    def bulk(self) -> tuple[str, int] | None:
        """The bulk and line the intent's update came from, if a bulk row."""
        kind, _, rest = self.ref.partition(":")
        bulk_id, _, line = rest.partition(":")
        return (bulk_id, int(line)) if kind == "bulk" and line.isdigit() else None


@dataclass(frozen=True)
class Due:
    account: str
    intent: Intent | None
    taken: str  # the score it was leased with, to finish it


def _schedule_args(after: float, ttl: int, items: Iterable[tuple[str, str]]) -> list[Any]:
    args: list[Any] = [round(after * 1000), ttl]
    for account, ref in items:
        args += [account, ref]
    return args


class ReadBack:
    """The read-back queue over a blocking client (single jobs and the reader)."""

    def __init__(self, client: Any, *, after: float, ttl: int) -> None:
        self._schedule = client.register_script(_SCHEDULE)
        self._take = client.register_script(_TAKE)
        self._done = client.register_script(_DONE)
        self.after = after
        self.ttl = ttl

    def schedule(self, account: str, ref: str) -> None:
        args = _schedule_args(self.after, self.ttl, [(account, ref)])
        self._schedule(keys=[keys.READBACK], args=args)

    def take_due(self, limit: int, lease: float) -> list[Due]:
        answer = self._take(keys=[keys.READBACK], args=[limit, round(lease * 1000)])
        taken = text(answer[0])
        rest = answer[1:]
        return [
            Due(text(rest[i]), Intent.from_hash(rest[i + 1]), taken) for i in range(0, len(rest), 2)
        ]

    def done(self, due: Due) -> bool:
        return bool(self._done(keys=[keys.READBACK], args=["done", due.account, due.taken, 0]))

    def later(self, due: Due, seconds: float) -> bool:
        args = ["later", due.account, due.taken, round(seconds * 1000)]
        return bool(self._done(keys=[keys.READBACK], args=args))


class AsyncReadBack:
    """The bulk engine's side: ambiguous rows scheduled in one call per batch."""

    def __init__(self, client: Any, *, after: float, ttl: int) -> None:
        self._schedule = client.register_script(_SCHEDULE)
        self.after = after
        self.ttl = ttl

    async def schedule_many(self, items: Sequence[tuple[str, str]]) -> None:
        if items:
            args = _schedule_args(self.after, self.ttl, items)
            await self._schedule(keys=[keys.READBACK], args=args)
