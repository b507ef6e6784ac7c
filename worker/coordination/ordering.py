"""Per-account order for updates: a later update is never overwritten by an earlier one.

Every update gets a sequence number when it is enqueued (`next_seq.lua`): one global
counter that starts from Redis's clock in microseconds, so numbers never go back, not
even when the counter key is lost. An update sent by name without a number gets one
when a worker first sees it, pinned to its job id, so a redelivery keeps it.

Each account's highest applied number is a field of a day's hash,
`voicemail:applied:{day}` (applied.lua), and while an update of it is in flight the
account has a hash of its own, `voicemail:acct:{account}`:

    o   the lock's owner: "<worker instance>:<fence>", one fence per delivery
    x   when the lock lapses (ms, Redis TIME) unless its owner renews it
    c   the last number claimed: its PATCH may have reached the API
    w   until when a dead owner's abandoned request may still land: only its own
        update (the same number) may run before then

Just before its PATCH, a worker claims the account (`claim.lua`), for a single job or
for every row of a bulk chunk in one call:

- an update older than one already applied is skipped (`SUPERSEDED`);
- an update whose own number is already applied, a redelivery, is skipped (`APPLIED`);
- two updates of one account never run at the same time (`LOCKED`: try later). A lock
  is free once it lapsed, or once its owner's worker instance was found dead
  (`worker.queue.liveness`): a dead worker's locks go with its messages;
- an update claimed before and never released (its worker died mid-request) is
  `UNSURE`: the worker reads the account first and sends nothing if the change is
  already there;
- an update older than `VOICEMAIL_ORDERING_TTL` is `EXPIRED` and not applied: a newer
  update's record may have expired since, so "newer" can no longer be told.

After the PATCH, `release.lua` raises the applied number (or, when the request surely
did not apply, forgets the claim) and drops the lock if this delivery still owns it.
Owners renew their locks while a call runs (`renew.lua`).

Between updates the account's own hash is gone (a hash with no field left is deleted)
and its applied number costs about 90 bytes in a day's hash, with no key of its own. A
day's hash expires `VOICEMAIL_ORDERING_TTL` + a day after its last write. That is safe
because numbers come from Redis's clock: when the record of an update numbered N
expires, every update numbered below N is older than the TTL, so it is refused as
`EXPIRED`, never applied.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from ..core import constants as C
from ..core import keys, lua
from ..core.errors import ApiConnectionError, ApiTimeout

logger = logging.getLogger(__name__)


class Verdict(IntEnum):
    """A claim's answer for one account; the Lua scripts get these names from here."""

    CLAIMED = 1
    SUPERSEDED = 0  # a later update of the account is already applied
    APPLIED = 2  # this very update is already applied (a redelivery)
    LOCKED = -1  # another update of the account is running
    UNSURE = 3  # claimed before and never released: check the account before sending
    EXPIRED = 4  # older than VOICEMAIL_ORDERING_TTL: a newer update's record may be gone
    NOT_ISSUED = 5  # higher than any number handed out: a sender made it up


CLAIMED, SUPERSEDED, APPLIED, LOCKED, UNSURE, EXPIRED, NOT_ISSUED = (
    Verdict.CLAIMED,
    Verdict.SUPERSEDED,
    Verdict.APPLIED,
    Verdict.LOCKED,
    Verdict.UNSURE,
    Verdict.EXPIRED,
    Verdict.NOT_ISSUED,
)
LOCK_TTL = 120  # seconds a lock outlives its owner's last renewal
SEQ_KEY = keys.SEQ

APPLIED_PREFIX = keys.APPLIED_PREFIX
_CONSTANTS: dict[str, object] = {v.name: v.value for v in Verdict} | {
    "REAPED_PREFIX": keys.REAPED_PREFIX,
    "APPLIED_PREFIX": APPLIED_PREFIX,
    "SEQ_KEY": SEQ_KEY,
}
CLAIM_SCRIPT = lua.load(__package__, "claim.lua", _CONSTANTS, include=["applied.lua"])


class Settled:
    """How a claimed update ended, for `release.lua`."""

    APPLIED = "1"
    NOT_APPLIED = "0"
    UNKNOWN = "?"  # timed out or cut off mid-request: it may have reached the API


RELEASE_SCRIPT = lua.load(
    __package__,
    "release.lua",
    {
        "APPLIED_NOW": Settled.APPLIED,
        "NOT_APPLIED": Settled.NOT_APPLIED,
        "APPLIED_PREFIX": APPLIED_PREFIX,
    },
    include=["applied.lua"],
)
RENEW_SCRIPT = lua.load(__package__, "renew.lua")
NEXT_SEQ_SCRIPT = lua.load(__package__, "next_seq.lua")


def state_key(account: str) -> str:
    return keys.account_state(account)


def pin_key(job_id: str) -> str:
    """Where a by-name update's number is pinned to its job id."""
    return keys.seq_pin(job_id)


def fence(instance: str) -> str:
    """A lock owner for one delivery: a redelivery of the same message is a new owner."""
    return f"{instance}:{uuid.uuid4().hex[:12]}"


def next_seq(client: Any, count: int = 1, *, pin: str | None = None, ttl: int = 0) -> int:
    """The first of `count` new numbers; with `pin` (a job id), the number pinned to it,
    taken and pinned for `ttl` seconds the first time."""
    keys = [SEQ_KEY] + ([pin_key(pin)] if pin else [])
    return int(client.register_script(NEXT_SEQ_SCRIPT)(keys=keys, args=[count, ttl]))


def claim_call(
    owner: str,
    items: Sequence[tuple[str, int]],
    straggler_window: float = 0.0,
    ordering_ttl: int = C.DEFAULT_ORDERING_TTL,
) -> tuple[list[str], list[Any]]:
    """`straggler_window`: seconds a dead owner's last request may still reach the API
    (its connect and read timeouts); a newer update of its accounts waits that long.
    `ordering_ttl`: VOICEMAIL_ORDERING_TTL; an older update is `EXPIRED`."""
    keys = [state_key(account) for account, _ in items]
    window_ms = round(straggler_window * 1000)
    return keys, [owner, LOCK_TTL * 1000, window_ms, ordering_ttl, *(seq for _, seq in items)]


def straggler_window(settings: Any) -> float:
    """How long after its worker was found dead an abandoned request may still land."""
    return float(settings.connect_timeout + settings.read_timeout) + 2.0


def release_call(
    owner: str, items: Sequence[tuple[str, int, str]], ordering_ttl: int = C.DEFAULT_ORDERING_TTL
) -> tuple[list[str], list[Any]]:
    """`items`: (account, seq, a `Settled` value) per claimed update."""
    keys: list[str] = []
    args: list[Any] = [owner, ordering_ttl]
    for account, seq, settled in items:
        keys.append(state_key(account))
        args += [seq, settled]
    return keys, args


def expired_reason(seq: int, ordering_ttl: int) -> str:
    """Why an `EXPIRED` update is not applied (`seq` is microseconds of Redis's clock)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seq / 1_000_000))
    return (
        f"the update was enqueued at {when}, more than VOICEMAIL_ORDERING_TTL "
        f"({ordering_ttl} s) ago: not applied, since a newer update may have been "
        "forgotten by now; send it again to apply it"
    )


def settled_by(exc: BaseException | None) -> str:
    """What a request's exception says about whether it reached the API."""
    if exc is None:
        return Settled.APPLIED
    if isinstance(exc, ApiTimeout | ApiConnectionError | TimeoutError):
        return Settled.UNKNOWN
    return Settled.NOT_APPLIED


def renew_call(owner: str, accounts: Sequence[str]) -> tuple[list[str], list[Any]]:
    return [state_key(a) for a in accounts], [owner, LOCK_TTL * 1000]


class LockRenewer:
    """Renews the account locks this process's single jobs hold while their calls run, so a
    call slower than `LOCK_TTL` (retries, 429 waits) never lets another update in."""

    def __init__(self, client: Any, every: float = LOCK_TTL / 4) -> None:
        self._renew = client.register_script(RENEW_SCRIPT)
        self._every = every
        self._held: dict[tuple[str, str], None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, account: str, owner: str) -> None:
        with self._lock:
            self._held[(account, owner)] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voicemail-locks", daemon=True
                )
                self._thread.start()

    def drop(self, account: str, owner: str) -> None:
        with self._lock:
            self._held.pop((account, owner), None)

    def renew_now(self) -> int:
        with self._lock:
            held = list(self._held)
        renewed = 0
        for account, owner in held:
            keys, args = renew_call(owner, [account])
            try:
                renewed += int(self._renew(keys=keys, args=args))
            except Exception:  # Redis away: the next round tries again, the TTL is long
                logger.warning("could not renew the lock of account %s", account, exc_info=True)
        return renewed

    def _run(self) -> None:
        while not self._wake.wait(self._every):
            self.renew_now()

    def stop(self) -> None:
        self._wake.set()
