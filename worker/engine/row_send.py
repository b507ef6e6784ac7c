"""One bulk row against the API: read first when the bulk asks for it, then PATCH.

How a bulk treats its rows (`Mode`):

- plain: PATCH every row;
- `only_changed`: GET first; a row whose account already holds the target is `unchanged`;
- `revertible`: as `only_changed`, and what the account held is written to the bulk's
  `before` hash before the PATCH, so a kill between the two cannot lose it;
- a revert (`reverts`): GET first; an account that no longer holds what the reverted
  bulk set is left alone (`Conflict`), one already back is `unchanged`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..api.models import VoicemailSettings
from ..api.retry import OnFailure, acall_with_retries
from ..coordination.bulk_records import SUCCEEDED, UNCHANGED, BulkRow
from ..core.errors import Conflict
from ..core.settings import Settings
from .engine_context import EngineContext


@dataclass(frozen=True, slots=True)
class Mode:
    only_changed: bool = False
    revertible: bool = False
    reverts: str | None = None

    @classmethod
    def from_meta(cls, only_changed: Any, revertible: Any, reverts: Any) -> Mode:
        """From the bulk record's fields, as redis-py returns them (bytes or None)."""
        return cls(only_changed == b"1", revertible == b"1", reverts.decode() if reverts else None)

    @property
    def reads(self) -> bool:
        return self.only_changed or self.revertible or self.reverts is not None


def _no_guard() -> None:
    return None


async def _nothing_before(row: BulkRow, current: VoicemailSettings | None) -> bool:
    return False


# None: go ahead; an awaitable: wait on it first (it raises to refuse).
Guard = Callable[[], Awaitable[None] | None]
# Writes what the account held before the PATCH (or, with `current` None, says whether an
# earlier delivery already did): True when the record is there.
Before = Callable[[BulkRow, VoicemailSettings | None], Awaitable[bool]]


async def apply_row(
    ctx: EngineContext,
    row: BulkRow,
    blob: bytes | str | None,
    mode: Mode,
    unsure: bool,
    guard: Guard = _no_guard,
    before: Before = _nothing_before,
    on_failure: OnFailure | None = None,
) -> str:
    """GET (when the mode or an unsure claim asks) and PATCH one row; `guard` runs before
    every attempt, `on_failure` after every failed PATCH attempt. Returns the outcome."""
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

    if mode.reads or unsure:
        current = await acall_with_retries(ctx.settings, get)
        if current.send == row.send and current.email == row.email:
            if not unsure:
                return UNCHANGED if mode.reads else SUCCEEDED
            # Unsure: an earlier delivery's PATCH may have reached the API before it died.
            if mode.revertible:
                return SUCCEEDED if await before(row, None) else UNCHANGED
            return UNCHANGED if mode.only_changed else SUCCEEDED
        if row.expect is not None and (current.send, current.email) != row.expect:
            send, email = row.expect
            raise Conflict(
                f"the account holds send={_flag(current.send)}, email={current.email} now, "
                f"not send={_flag(send)}, email={email} as bulk {mode.reverts} left it"
            )
        if mode.revertible:
            await before(row, current)
    await acall_with_retries(ctx.settings, patch, on_failure=on_failure)
    return SUCCEEDED


def _flag(value: bool) -> str:
    return "true" if value else "false"


def row_deadline(settings: Settings) -> float:
    """The longest one row may take: every attempt timing out, every backoff, every 429."""
    attempt = settings.connect_timeout + settings.read_timeout + settings.retry_max_delay
    waits = settings.retry_after_max * settings.rate_limited_max
    return attempt * (settings.retry_attempts + 1) + waits
