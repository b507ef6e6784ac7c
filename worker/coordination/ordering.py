"""Per-account order for updates: a later update is never overwritten by an earlier one.

Every update gets a sequence number per account when it is enqueued (`next_seq`,
an INCR). Just before its PATCH, a worker claims the account: one Lua call that
checks the highest sequence already applied and takes the account's lock. So:

- an update older than one already applied is skipped (`SUPERSEDED`);
- an update whose own number is already applied, a redelivery, is skipped
  (`APPLIED`): at-least-once delivery, applied once;
- two updates of one account never run at the same time (`LOCKED`: try later).

After the PATCH, `release` raises the applied number and drops the lock. A lock
held by a worker that died lapses after `LOCK_TTL` seconds; a bulk chunk whose rows
wait their turn (a low rate limit) renews the locks it still holds (`renew.lua`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from ..core import constants as C
from ..core import lua


class Verdict(IntEnum):
    """A claim's answer for one account; the Lua scripts get these names from here."""

    CLAIMED = 1
    SUPERSEDED = 0  # a later update of the account is already applied
    APPLIED = 2  # this very update is already applied (a redelivery)
    LOCKED = -1  # another update of the account is running


CLAIMED, SUPERSEDED, APPLIED, LOCKED = (
    Verdict.CLAIMED,
    Verdict.SUPERSEDED,
    Verdict.APPLIED,
    Verdict.LOCKED,
)
LOCK_TTL = 120  # longer than one row's in-process retries can take

CLAIM_SCRIPT = lua.load(__package__, "claim.lua", {v.name: v.value for v in Verdict})
RELEASE_SCRIPT = lua.load(__package__, "release.lua")
RENEW_SCRIPT = lua.load(__package__, "renew.lua")


def seq_key(account: str) -> str:
    return f"{C.KEY_PREFIX}seq:{{{account}}}"


def lock_key(account: str) -> str:
    return f"{C.KEY_PREFIX}lock:{{{account}}}"


def applied_key(account: str) -> str:
    return f"{C.KEY_PREFIX}applied:{{{account}}}"


def claim_call(owner: str, items: Sequence[tuple[str, int]]) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    for account, _ in items:
        keys += [lock_key(account), applied_key(account)]
    return keys, [owner, LOCK_TTL * 1000, *(seq for _, seq in items)]


def release_call(owner: str, items: Sequence[tuple[str, int, bool]]) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    args: list[Any] = [owner]
    for account, seq, applied in items:
        keys += [lock_key(account), applied_key(account)]
        args += [seq, "1" if applied else "0"]
    return keys, args
