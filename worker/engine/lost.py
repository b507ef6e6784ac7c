"""A chunk whose rows are gone from Redis when it runs.

Nothing of a bulk expires before it settles (`record_outcomes.lua`), so this takes
something else: a Redis restarted without its data, a key deleted by hand, a bug. The
producer keeps each chunk's lines apart from its rows (`Keys.lines`); the lines of a lost
chunk that no run recorded are recorded as failed with a reason starting `ChunkLost:`,
so they show in `bulk failures`, `pending` still reaches 0 and the chunk task fails
loudly. A chunk whose every line is recorded (a redelivery after it finished) stays a
quiet no-op.
"""

from __future__ import annotations

from ..coordination.bulk_records import Keys, Outcome, lines_of, record_args, recorded_lines
from ..core.connections import text
from .engine_context import EngineContext
from .recorder import ChunkReport


async def record_lost(ctx: EngineContext, keys: Keys, number: int, report: ChunkReport) -> None:
    """Chunk `number`'s rows are gone: fail its unrecorded lines, counted in `report`."""
    report.missing = True
    runs = await ctx.redis.hget(keys.lines, number)
    if runs is None:  # a bulk settled and expired, or stored before lines were kept
        return
    lines = lines_of(text(runs))
    recorded = await recorded_lines(ctx.redis, keys, lines)
    gone = [line for line, seen in zip(lines, recorded, strict=True) if not seen]
    report.rows, report.skipped = len(lines), len(lines) - len(gone)
    if not gone:
        return
    reason = (
        f"ChunkLost: chunk {number} of bulk {keys.bulk_id} was gone from Redis before "
        "this row was sent; its account and values are unknown here"
    )
    outcomes = [Outcome.failed(line, reason) for line in gone]
    await ctx.record(
        keys=keys.record_keys(), args=record_args(outcomes, ctx.settings.result_expires)
    )
    report.failed = report.lost = len(gone)
