"""What an operator types to shape a rollout, parsed once and checked: waves, a failure
threshold, a start time and a delay. Each parser raises InputError with one line that
names the bad part, so the CLI and the producer API refuse the same input the same way.

- waves: cumulative sizes, counts or percentages, the last 100% (`1%,10%,100%`,
  `50,500,100%`); a percentage is rounded up to whole rows, at least one.
- threshold: `N` failed rows, or `P%` of the settled rows (`--max-failures`).
- when: ISO 8601 with an offset (`2026-11-29T22:00:00+03:00`), or `+30s`, `+30m`, `+2h`.
- duration: `20s`, `30m`, `2h`, `1d` (`--revert-after`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from ..core.errors import InputError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_waves(spec: str, total: int) -> list[int]:
    """The cumulative row count at the end of each wave, for a bulk of `total` rows."""
    parts = [p.strip() for p in spec.split(",")]
    if not parts or any(not p for p in parts):
        raise InputError(f"--waves {spec!r}: give sizes separated by commas, like 1%,10%,100%")
    if parts[-1] != "100%":
        raise InputError(f"--waves {spec!r}: the last wave must be 100%")
    ends: list[int] = []
    for part in parts:
        end = _wave_end(spec, part, total)
        if ends and end < ends[-1]:
            raise InputError(f"--waves {spec!r}: sizes are cumulative and must not shrink")
        if not ends or end > ends[-1]:  # two waves ending on the same row are one
            ends.append(end)
    return ends


def _wave_end(spec: str, part: str, total: int) -> int:
    if part.endswith("%"):
        try:
            share = float(part[:-1])
        except ValueError:
            share = math.nan
        if not 0 < share <= 100:
            raise InputError(f"--waves {spec!r}: {part!r} is not a percentage in (0, 100]")
        return min(total, max(1, math.ceil(total * share / 100)))
    if not part.isdigit() or int(part) < 1:
        raise InputError(f"--waves {spec!r}: {part!r} is neither a row count nor a percentage")
    return min(total, int(part))


@dataclass(frozen=True)
class Threshold:
    """`--max-failures`: `rows` failed rows, or `percent` of the settled ones."""

    text: str  # as the user typed it, for `paused_reason`
    rows: int | None = None
    percent: float | None = None

    def exceeded(self, failed: int, settled: int) -> bool:
        if self.rows is not None:
            return failed > self.rows
        assert self.percent is not None
        return settled > 0 and failed * 100 > self.percent * settled


def parse_threshold(text: str) -> Threshold:
    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 <= percent < 100:
                raise ValueError
            return Threshold(value, percent=percent)
        rows = int(value)
        if rows < 0:
            raise ValueError
        return Threshold(value, rows=rows)
    except ValueError:
        raise InputError(
            f"--max-failures {text!r}: give a row count (5) or a percentage below 100 (5%)"
        ) from None


def parse_duration(text: str) -> float:
    """Seconds in `20s`, `30m`, `2h` or `1d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise InputError(f"{text!r} is not a duration: give a number and a unit, like 30m or 2h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_when(text: str, now: float) -> float:
    """An epoch time from `+30m` (after `now`) or ISO 8601 with an offset."""
    value = text.strip()
    if value.startswith("+"):
        return now + parse_duration(value[1:])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--at {text!r}: give ISO 8601 with an offset (2026-11-29T22:00:00+03:00) or +30m"
        ) from None
    if moment.tzinfo is None:
        raise InputError(f"--at {text!r}: the time needs an offset (+03:00, or Z for UTC)")
    return moment.timestamp()
