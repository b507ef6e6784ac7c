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

`Ordering` (blocking, for single jobs and producers) and `AsyncOrdering` (the bulk
engine) own these scripts and are the only way to run them; a lock owner is a string
`new_lock_owner()` makes, one per delivery.

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
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple, Self

from ..core import constants as C
from ..core import keys, lua
from ..core.errors import PlusofonError

logger = logging.getLogger(__name__)

LOCK_TTL = 120  # seconds a lock outlives its owner's last renewal


class Verdict(IntEnum):
    """A claim's answer for one account; the Lua scripts get these names from here."""

    CLAIMED = 1
    SUPERSEDED = 0  # a later update of the account is already applied
    APPLIED = 2  # this very update is already applied (a redelivery)
    LOCKED = -1  # another update of the account is running
    UNSURE = 3  # claimed before and never released: check the account before sending
    EXPIRED = 4  # older than VOICEMAIL_ORDERING_TTL: a newer update's record may be gone
    NOT_ISSUED = 5  # higher than any number handed out: a sender made it up


class Settled(StrEnum):
    """How a claimed update ended, for `release.lua`."""

    APPLIED = "1"
    NOT_APPLIED = "0"
    UNKNOWN = "?"  # timed out or cut off mid-request: it may have reached the API


class Release(NamedTuple):
    """One claimed update to release. An applied one names its values and who asked for
    it (`job:<id>`, `bulk:<id>:<line>`): they become the account's intent while a
    read-back of it is pending (worker.coordination.readback)."""

    account: str
    seq: int
    settled: Settled
    send: bool | None = None
    email: str = ""
    ref: str = ""


_CLAIM = lua.load(
    __package__,
    "claim.lua",
    {v.name: v.value for v in Verdict}
    | {
        "REAPED_PREFIX": keys.REAPED_PREFIX,
        "APPLIED_PREFIX": keys.APPLIED_PREFIX,
        "SEQ_KEY": keys.SEQ,
    },
    include=["applied.lua"],
)
_RELEASE = lua.load(
    __package__,
    "release.lua",
    {
        "APPLIED_NOW": Settled.APPLIED.value,
        "NOT_APPLIED": Settled.NOT_APPLIED.value,
        "APPLIED_PREFIX": keys.APPLIED_PREFIX,
        "VERIFY_KEY": keys.READBACK,
        "INTENT_PREFIX": keys.INTENT_PREFIX,
    },
    include=["applied.lua"],
)
_RENEW = lua.load(__package__, "renew.lua")
_CHECK_LOCK = lua.load(__package__, "check_lock.lua", {"REAPED_PREFIX": keys.REAPED_PREFIX})
_NEXT_SEQ = lua.load(__package__, "next_seq.lua")


def new_lock_owner(instance: str) -> str:
    """A lock owner for one delivery: a redelivery of the same message is a new owner."""
    return f"{instance}:{uuid.uuid4().hex[:12]}"


def straggler_window(settings: Any) -> float:
    """How long after its worker was found dead an abandoned request may still land."""
    return float(settings.connect_timeout + settings.read_timeout) + 2.0


def expired_reason(seq: int, ordering_ttl: int) -> str:
    """Why an `EXPIRED` update is not applied (`seq` is microseconds of Redis's clock)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seq / 1_000_000))
    return (
        f"the update was enqueued at {when}, more than VOICEMAIL_ORDERING_TTL "
        f"({ordering_ttl} s) ago: not applied, since a newer update may have been "
        "forgotten by now; send it again to apply it"
    )


def settled_by(exc: BaseException | None) -> Settled:
    """What a request's outcome says about whether the vendor applied it. Only an answer
    that proves a refusal (429, 401, 422, "User not found", the API's own JSON error) or a
    request that never left (connection refused) is NOT_APPLIED; a timeout, a reset after
    sending, a gateway's 5xx may have been applied, now or later: UNKNOWN."""
    if exc is None:
        return Settled.APPLIED
    if isinstance(exc, PlusofonError):
        return Settled.NOT_APPLIED if exc.refused else Settled.UNKNOWN
    if isinstance(exc, TimeoutError):  # a row's deadline, mid-request
        return Settled.UNKNOWN
    return Settled.NOT_APPLIED


class _Calls:
    """The keys and arguments of each script, shared by both flavours."""

    def __init__(self, straggler_window: float, ordering_ttl: int, lock_ttl: float) -> None:
        self.window_ms = round(straggler_window * 1000)
        self.ordering_ttl = ordering_ttl
        self.lock_ttl_ms = round(lock_ttl * 1000)

    def claim(self, owner: str, items: Sequence[tuple[str, int]]) -> tuple[list[str], list[Any]]:
        keys_ = [keys.account_state(account) for account, _ in items]
        seqs = [seq for _, seq in items]
        return keys_, [owner, self.lock_ttl_ms, self.window_ms, self.ordering_ttl, *seqs]

    def release(self, owner: str, items: Sequence[Release]) -> tuple[list[str], list[Any]]:
        keys_: list[str] = []
        args: list[Any] = [owner, self.ordering_ttl]
        for item in items:
            release = Release(*item)
            keys_.append(keys.account_state(release.account))
            send = "" if release.send is None else ("1" if release.send else "0")
            args += [release.seq, Settled(release.settled).value, send, release.email]
            args.append(release.ref)
        return keys_, args

    def renew(self, owner: str, accounts: Sequence[str]) -> tuple[list[str], list[Any]]:
        return [keys.account_state(a) for a in accounts], [owner, self.lock_ttl_ms]

    @staticmethod
    def next_seq(count: int, pin: str | None, ttl: int) -> tuple[list[str], list[Any]]:
        return [keys.SEQ] + ([keys.seq_pin(pin)] if pin else []), [count, ttl]


class _Scripts:
    """The scripts registered once on a client, sync or asyncio alike.

    `straggler_window`: seconds a dead owner's last request may still reach the API (its
    connect and read timeouts); a newer update of its accounts waits that long.
    `ordering_ttl`: VOICEMAIL_ORDERING_TTL; an older update is `EXPIRED`. `lock_ttl`:
    seconds a lock outlives its owner's last renewal."""

    def __init__(
        self,
        client: Any,
        *,
        straggler_window: float = 0.0,
        ordering_ttl: int = C.DEFAULT_ORDERING_TTL,
        lock_ttl: float = LOCK_TTL,
    ) -> None:
        self._calls = _Calls(straggler_window, ordering_ttl, lock_ttl)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._next_seq = client.register_script(_NEXT_SEQ)
        self._check_lock = client.register_script(_CHECK_LOCK)
        self._lock_ttl_ms = round(lock_ttl * 1000)
        self._client = client

    @classmethod
    def for_settings(cls, client: Any, settings: Any) -> Self:
        return cls(
            client,
            straggler_window=straggler_window(settings),
            ordering_ttl=settings.ordering_ttl,
        )


class Ordering(_Scripts):
    """The per-account order over a blocking client: single jobs and producers."""

    def claim(self, lock_owner: str, items: Sequence[tuple[str, int]]) -> list[Verdict]:
        """One verdict per (account, update number), in one call."""
        keys_, args = self._calls.claim(lock_owner, items)
        return [Verdict(int(v)) for v in self._claim(keys=keys_, args=args)]

    def release(self, lock_owner: str, items: Sequence[Release]) -> None:
        keys_, args = self._calls.release(lock_owner, items)
        self._release(keys=keys_, args=args)

    def renew(self, lock_owner: str, accounts: Sequence[str]) -> int:
        """How many of `accounts` this owner still held (their locks now renewed)."""
        keys_, args = self._calls.renew(lock_owner, accounts)
        return int(self._renew(keys=keys_, args=args))

    def next_seq(
        self, count: int = 1, *, pin: str | None = None, ttl: int = 0, pipe: Any = None
    ) -> Any:
        """The first of `count` new update numbers; with `pin` (a job id), the number
        pinned to it, taken and pinned for `ttl` seconds the first time. In `pipe`, the
        call is queued and its answer comes with the pipeline's."""
        keys_, args = self._calls.next_seq(count, pin, ttl)
        answer = self._next_seq(keys=keys_, args=args, client=pipe or self._client)
        return answer if pipe is not None else int(answer)

    def lock_for_check(self, lock_owner: str, account: str) -> bool:
        """Lock the account for a read-back, if no live update holds it."""
        keys_ = [keys.account_state(account)]
        return bool(self._check_lock(keys=keys_, args=["lock", lock_owner, self._lock_ttl_ms]))

    def unlock_check(self, lock_owner: str, account: str) -> None:
        keys_ = [keys.account_state(account)]
        self._check_lock(keys=keys_, args=["unlock", lock_owner, self._lock_ttl_ms])

    def lock_owner_of(self, account: str) -> str | None:
        """Who holds the account's lock now (None: nobody)."""
        owner = self._client.hget(keys.account_state(account), "o")
        return owner.decode() if isinstance(owner, bytes) else owner


class AsyncOrdering(_Scripts):
    """The per-account order over an asyncio client: the bulk engine's rows."""

    async def claim(self, lock_owner: str, items: Sequence[tuple[str, int]]) -> list[Verdict]:
        keys_, args = self._calls.claim(lock_owner, items)
        return [Verdict(int(v)) for v in await self._claim(keys=keys_, args=args)]

    async def release(self, lock_owner: str, items: Sequence[Release]) -> None:
        keys_, args = self._calls.release(lock_owner, items)
        await self._release(keys=keys_, args=args)

    async def renew(self, lock_owner: str, accounts: Sequence[str]) -> int:
        keys_, args = self._calls.renew(lock_owner, accounts)
        return int(await self._renew(keys=keys_, args=args))


class LockRenewer:
    """Renews the account locks this process's single jobs hold while their calls run, so a
    call slower than `LOCK_TTL` (retries, 429 waits) never lets another update in."""

    def __init__(self, ordering: Ordering, every: float = LOCK_TTL / 4) -> None:
        self._ordering = ordering
        self._every = every
        self._held: dict[tuple[str, str], None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, account: str, lock_owner: str) -> None:
        with self._lock:
            self._held[(account, lock_owner)] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voicemail-locks", daemon=True
                )
                self._thread.start()

    def drop(self, account: str, lock_owner: str) -> None:
        with self._lock:
            self._held.pop((account, lock_owner), None)

    def renew_now(self) -> int:
        with self._lock:
            held = list(self._held)
        renewed = 0
        for account, lock_owner in held:
            try:
                renewed += self._ordering.renew(lock_owner, [account])
            except Exception:  # Redis away: the next round tries again, the TTL is long
                logger.warning("could not renew the lock of account %s", account, exc_info=True)
        return renewed

    def _run(self) -> None:
        while not self._wake.wait(self._every):
            self.renew_now()

    def stop(self) -> None:
        self._wake.set()
