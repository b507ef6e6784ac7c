"""One bulk row against the API: read first when the bulk asks for it, then PATCH.

How a bulk treats its rows (`Mode`):

- plain: PATCH every row;
- `only_changed`: GET first; a row whose account already holds the target is `unchanged`;
- `revertible`: as `only_changed`, and what the account held is written to the bulk's
  `before` hash before the PATCH, so a kill between the two cannot lose it;
- a revert (`reverts`): GET first; an account that no longer holds what the reverted
  bulk set is left alone (`Conflict`), one already back is `unchanged`;
- an applied plan (`applies`): the same, against what the plan read (`Stale`);
- `verify`: GET only, never PATCH: a row whose account holds its values is `unchanged`,
  any other fails as `Drifted`, with what the vendor has;
- `plan`: GET only, never PATCH: what the account holds is written down (`note`, into the
  bulk's `before` hash); `succeeded` means "would change", `unchanged` "holds it already".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.models import VoicemailSettings
from ..api.retry import OnFailure, acall_with_retries
from ..coordination.bulk_records import SUCCEEDED, UNCHANGED, BulkRow
from ..core.errors import Conflict, Drifted, Stale
from ..core.settings import Settings
from .engine_context import EngineContext

# The bulk record's fields `Mode.from_meta` reads, in this order.
MODE_FIELDS = ("only_changed", "revertible", "reverts", "verify", "plan", "applies")


@dataclass(frozen=True, slots=True)
class Mode:
    only_changed: bool = False
    revertible: bool = False
    reverts: str | None = None
    verify: bool = False
    plan: bool = False
    applies: str | None = None  # the plan whose rows these are

    @classmethod
    def from_meta(cls, values: Sequence[Any]) -> Mode:
        """From the bulk record's MODE_FIELDS, as redis-py returns them (bytes or None)."""
        meta = dict(zip(MODE_FIELDS, values, strict=True))

        def flag(name: str) -> bool:
            return bool(meta[name] == b"1")

        def bulk_id(name: str) -> str | None:
            return meta[name].decode() if meta[name] else None

        return cls(
            only_changed=flag("only_changed"),
            revertible=flag("revertible"),
            reverts=bulk_id("reverts"),
            verify=flag("verify"),
            plan=flag("plan"),
            applies=bulk_id("applies"),
        )

    @property
    def reads(self) -> bool:
        """Reads before it writes."""
        return self.only_changed or self.revertible or bool(self.reverts or self.applies)

    @property
    def read_only(self) -> bool:
        """Reads, and never writes."""
        return self.verify or self.plan


def _no_guard() -> None:
    return None


async def _nothing_before(row: BulkRow, current: VoicemailSettings | None) -> bool:
    return False


async def _not_noted(row: BulkRow, current: VoicemailSettings) -> str:
    raise RuntimeError("a plan's row needs somewhere to note what it read")


# None: go ahead; an awaitable: wait on it first (it raises to refuse).
Guard = Callable[[], Awaitable[None] | None]
# Writes what the account held before the PATCH (or, with `current` None, says whether an
# earlier delivery already did): True when the record is there.
Before = Callable[[BulkRow, VoicemailSettings | None], Awaitable[bool]]
# A plan's: writes down what the account holds; returns the row's outcome code.
Note = Callable[[BulkRow, VoicemailSettings], Awaitable[str]]
# Told what a row read before it writes (line, send, email): the journal's `before`.
Read = Callable[[int, bool, str], None]


def _unread(line: int, send: bool, email: str) -> None:
    return None


async def apply_row(
    ctx: EngineContext,
    row: BulkRow,
    blob: bytes | str | None,
    mode: Mode,
    unsure: bool,
    guard: Guard = _no_guard,
    before: Before = _nothing_before,
    note: Note = _not_noted,
    on_failure: OnFailure | None = None,
    read: Read = _unread,
) -> str:
    """GET (when the mode or an unsure claim asks) and PATCH one row (never, for a
    read-only mode); `guard` runs before every attempt, `on_failure` after every failed
    PATCH attempt, `read` after the GET of a row that writes. Returns the outcome code."""
    creds = ctx.cipher.open(row.account, blob)

    async def get() -> VoicemailSettings:
        if (wait := guard()) is not None:
            await wait
        return await ctx.client.get_voicemail(creds, ready=guard)

    async def patch() -> VoicemailSettings:
        # Before taking a rate-limit slot, and again right before sending.
        if (wait := guard()) is not None:
            await wait
        return await ctx.client.set_voicemail(creds, row.send, row.email, ready=guard)

    if mode.read_only:
        current = await acall_with_retries(ctx.settings, get)
        return await note(row, current) if mode.plan else _verified(row, current)
    if mode.reads or unsure:
        current = await acall_with_retries(ctx.settings, get)
        if not unsure or (current.send, current.email) != (row.send, row.email):
            read(row.line, current.send, current.email)  # else: what the earlier one found
        if current.send == row.send and current.email == row.email:
            if not unsure:
                return UNCHANGED if mode.reads else SUCCEEDED
            # Unsure: an earlier delivery's PATCH may have reached the API before it died.
            if mode.revertible:
                return SUCCEEDED if await before(row, None) else UNCHANGED
            return UNCHANGED if mode.only_changed else SUCCEEDED
        if row.expect is not None and (current.send, current.email) != row.expect:
            raise _conflict(row.expect, current, mode)
        if mode.revertible:
            await before(row, current)
    await acall_with_retries(ctx.settings, patch, on_failure=on_failure)
    return SUCCEEDED


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _conflict(expect: tuple[bool, str], current: VoicemailSettings, mode: Mode) -> Conflict:
    """The account no longer holds what a revert (or an applied plan) expects of it."""
    send, email = expect
    held = f"the account holds send={_flag(current.send)}, email={current.email} now, "
    if mode.applies:
        return Stale(f"{held}not send={_flag(send)}, email={email} as plan {mode.applies} read it")
    return Conflict(f"{held}not send={_flag(send)}, email={email} as bulk {mode.reverts} left it")


def _verified(row: BulkRow, current: VoicemailSettings) -> str:
    """A verify's row: `unchanged` when the account holds the row's values."""
    if current.send != row.send or current.email != row.email:
        raise Drifted(f"vendor has send={_flag(current.send)}, email={current.email}")
    return UNCHANGED


def plan_entry(row: BulkRow, current: VoicemailSettings) -> list[Any]:
    """What a plan keeps of a row it read (`before` hash): [account, send, email] when the
    account holds the row's values already, else [account, send, email, new send, new
    email]."""
    entry: list[Any] = [row.account, current.send, current.email]
    if current.send != row.send or current.email != row.email:
        entry += [row.send, row.email]
    return entry


def plan_code(entry: Sequence[Any]) -> str:
    """A plan's row outcome: `succeeded` (would change) or `unchanged`."""
    return SUCCEEDED if len(entry) > 3 else UNCHANGED


def row_deadline(settings: Settings) -> float:
    """The longest one row may take: every attempt timing out, every backoff, every 429."""
    attempt = settings.connect_timeout + settings.read_timeout + settings.retry_max_delay
    waits = settings.retry_after_max * settings.rate_limited_max
    return attempt * (settings.retry_attempts + 1) + waits
