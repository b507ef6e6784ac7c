"""Waves and the automatic stop of a bulk (`--waves`, `--wave-pause`, `--max-failures`,
`--min-sample`).

A bulk's rows are cut into segments: one per wave, and with `--max-failures` the first
`min_sample` rows in one of their own, so that no more than those are in flight until
they have settled. A chunk never straddles a segment's end. The chunks of the first
segment are queued as usual; the others wait in the bulk's `held` hash, and the Lua step
that records the outcome settling a segment's last row starts the next one (`waves.lua`):
it moves the next segment's chunks to `waking`, from where the worker that recorded it
queues them (`wake_bulk`), or any worker's once-a-second tick if that one died
(`bulk_control.wake_orphans`): the path a resume takes, loss-free. With `--wave-pause`,
the end of a wave but the last pauses the bulk instead, the next wave's chunks parked
for the resume.

With `--max-failures`, the same step pauses the bulk when, once `min_sample` rows
settled, the failed rows (stale ones aside) exceed the threshold; `paused_reason` says
why, and `--notify` is sent. A resume starts the count and the sample again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Any, TypedDict

from ..core import lua
from ..core.errors import InputError
from ..core.keys import NOTIFY_OUTBOX, WAKING
from .bulk_control import WAKE_LEASE, WAKE_TAKE_SCRIPT, Send, _pairs, queue_woken
from .bulk_records import Keys
from .rollout import parse_threshold, parse_waves

CHUNK_SCRIPT = lua.load(
    __package__,
    "wave_chunk.lua",
    {"WAKING": WAKING, "OUTBOX": NOTIFY_OUTBOX},
    include=["waves.lua"],
)
DEFAULT_MIN_SAMPLE = 20
_NO_END = 1 << 40


class Rollout(TypedDict, total=False):
    """The keyword arguments of `submit_bulk` and `apply_plan` that `options` checks."""

    waves: str | None
    wave_pause: bool
    max_failures: str | None
    min_sample: int | None


def options(
    waves: str | None = None,
    wave_pause: bool = False,
    max_failures: str | None = None,
    min_sample: int | None = None,
) -> dict[str, str | int]:
    """The bulk record's fields for these options, checked (InputError, one line)."""
    fields: dict[str, str | int] = {}
    if waves is not None:
        parse_waves(waves, 1_000_000)  # its form; the sizes are checked against the rows
        fields["waves_spec"] = waves.strip()
    if wave_pause:
        if waves is None:
            raise InputError("--wave-pause needs --waves: there is no wave to pause after")
        fields["wave_pause"] = 1
    if max_failures is not None:
        threshold = parse_threshold(max_failures)
        fields["max_failures"] = threshold.text
        if threshold.rows is not None:
            fields["fail_rows"] = threshold.rows
        else:
            fields["fail_pct"] = repr(threshold.percent)
        sample = DEFAULT_MIN_SAMPLE if min_sample is None else min_sample
        if sample < 1:
            raise InputError(f"--min-sample {sample}: give a row count of at least 1")
        fields["min_sample"] = sample
    elif min_sample is not None:
        raise InputError("--min-sample needs --max-failures: it is the sample of that check")
    return fields


@dataclass(frozen=True)
class Segments:
    """Where each segment ends (a count of the rows read, cumulative) and its wave."""

    ends: tuple[int, ...]
    waves: tuple[int, ...]

    @classmethod
    def plan(cls, meta: dict[Any, Any], total: int) -> Segments | None:
        """The segments of a bulk of `total` rows with the options in `meta` (`options`),
        or None when it has neither waves nor a threshold."""
        spec, sample = meta.get("waves_spec"), meta.get("min_sample")
        if (spec is None and sample is None) or total < 1:
            return None
        wave_ends = parse_waves(str(spec), total) if spec is not None else [total]
        ends = set(wave_ends)
        if sample is not None and int(sample) < total:
            ends.add(int(sample))
        ordered = tuple(sorted(ends))
        # A segment's wave: 1 + the waves that ended before it.
        waves = tuple(1 + sum(1 for w in wave_ends if w < end) for end in ordered)
        return cls(ordered, waves)

    def fields(self) -> dict[str, int]:
        """Its fields in the bulk's meta hash (`waves.lua`)."""
        out = {"seg": 1, "segs": len(self.ends), "wave": 1, "waves": self.waves[-1]}
        out.update({f"seg_wave:{i}": w for i, w in enumerate(self.waves, start=1)})
        return out

    def next_end(self, read: int) -> int:
        """The end of the segment the row after `read` rows belongs to."""
        # None left: only the rows counted are read, so this does not happen.
        return next((end for end in self.ends if end > read), read + _NO_END)

    def ends_at(self, read: int) -> int | None:
        """The segment (1-based) that ends after `read` rows, if one does."""
        try:
            return self.ends.index(read) + 1
        except ValueError:
            return None


def segmented(rows: Iterable[Any], meta: dict[Any, Any]) -> tuple[Iterable[Any], Segments | None]:
    """The rows, and their segments when the bulk record `meta` asks for waves or a
    threshold (and is no dry run). Segments need the row count before the first chunk:
    rows without a len() are read whole (the CLI counts a file in a first pass instead:
    `cli.bulk_waves`)."""
    if meta.get("dry_run") or not ("waves_spec" in meta or "min_sample" in meta):
        return rows, None
    if not isinstance(rows, Sized):
        rows = list(rows)
    return rows, Segments.plan(meta, len(rows))


def batches(rows: Iterable[Any], size: int, segments: Segments | None) -> Iterator[list[Any]]:
    """`rows` in lists of at most `size`, none across a segment's end."""
    iterator = iter(rows)
    read = 0
    while True:
        room = size if segments is None else min(size, segments.next_end(read) - read)
        batch: list[Any] = []
        for item in iterator:
            batch.append(item)
            if len(batch) >= room:
                break
        if not batch:
            return
        read += len(batch)
        yield batch


def hold(client: Any, keys: Keys, number: int, segment: int) -> bool:
    """Keep chunk `number` of `segment` until its segment starts; False: queue it now."""
    script = client.register_script(CHUNK_SCRIPT)
    return bool(script(keys=keys.all(), args=["hold", number, segment]))


def close(client: Any, keys: Keys, segment: int, queued: int, send: Send) -> None:
    """Every chunk of `segment` is queued (`queued` rows in it and those before): the
    segment may end once those rows settle, or at once if they did."""
    script = client.register_script(CHUNK_SCRIPT)
    script(keys=keys.all(), args=["close", segment, queued, repr(time.time())])
    wake_bulk(client, keys.bulk_id, send)


def wake_bulk(client: Any, bulk_id: str, send: Send) -> int:
    """Queue the chunks of `bulk_id` a wave's start released, unless a resumer is at
    it; returns how many. One SISMEMBER when there are none."""
    if not client.sismember(WAKING, bulk_id):
        return 0
    keys = Keys(bulk_id)
    script = client.register_script(WAKE_TAKE_SCRIPT)
    chunks = _pairs(script(keys=[keys.meta, keys.waking], args=[time.time(), WAKE_LEASE, bulk_id]))
    if chunks:
        queue_woken(client, bulk_id, chunks, send)
    return len(chunks)


def wave_status(meta: dict[str, str]) -> dict[str, Any]:
    """`wave` and `waves` for a bulk's status: 1 and 1 for a bulk without waves."""
    return {"wave": int(meta.get("wave") or 1), "waves": int(meta.get("waves") or 1)}


class Cuts:
    """The producer's place in the segments while it streams a bulk's rows."""

    def __init__(self, client: Any, keys: Keys, segments: Segments | None, send: Send) -> None:
        self.client = client
        self.keys = keys
        self.segments = segments
        self.send = send
        self.segment = 1  # the segment of the rows read and not yet chunked
        self.queued = 0  # rows queued in chunks so far

    def at_end(self, read: int) -> bool:
        """Whether the rows read so far end a segment: its last chunk is cut there."""
        return self.segments is not None and self.segments.ends_at(read) is not None

    def passed(self, read: int) -> None:
        """Called once the rows read are chunked: closes the segment they end, if any."""
        if self.segments is not None and self.segments.ends_at(read) == self.segment:
            close(self.client, self.keys, self.segment, self.queued, self.send)
            self.segment += 1

    def hold(self, number: int) -> bool:
        """Whether chunk `number`, of the current segment, waits for its segment."""
        return self.segment > 1 and hold(self.client, self.keys, number, self.segment)
