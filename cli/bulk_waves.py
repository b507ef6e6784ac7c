"""The rollout options of `bulk submit` and `bulk apply`: `--waves`, `--wave-pause`,
`--max-failures`, `--min-sample` (worker.coordination.waves).

A bulk with waves or a threshold is cut into segments before its first chunk is queued,
so it needs its row count first: a file is counted in a first pass and read again (stdin
is read whole instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import click

ROLLOUT = ("waves", "wave_pause", "max_failures", "min_sample")


def rollout_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the four options; the command receives them as keyword arguments."""
    for option in reversed(
        (
            click.option(
                "--waves",
                metavar="SPEC",
                help="Cumulative wave sizes, rows or %, the last 100%: 1%,10%,100%. "
                "A wave starts once every row of the one before settled.",
            ),
            click.option("--wave-pause", is_flag=True, help="Pause after each wave but the last."),
            click.option(
                "--max-failures",
                metavar="N|P%",
                help="Pause the bulk by itself once more than N rows, or P% of the settled "
                "rows, failed.",
            ),
            click.option(
                "--min-sample",
                type=int,
                metavar="M",
                help="Rows settled before --max-failures is checked (default 20); also the "
                "most rows in flight until then, and per chunk throughout.",
            ),
        )
    ):
        command = option(command)
    return command


class FileRows:
    """A file's rows, counted once and then read again: `len()` for the segments."""

    def __init__(self, path: str, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self._count: int | None = None

    def __iter__(self) -> Iterator[Any]:
        from .row_files import open_input, read_rows

        with open_input(self.path) as fh:
            yield from read_rows(fh, self.fmt, self.path)

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self)
        return self._count


def rows_for(path: str, fmt: str, rows: Any, rollout: dict[str, Any]) -> Any:
    """`rows`, or the file counted and read again when the bulk is cut into segments."""
    cut = rollout.get("waves") is not None or rollout.get("max_failures") is not None
    return FileRows(path, fmt) if cut and path != "-" else rows


def stopped_line(status: Any) -> None:
    """On stderr: why a bulk paused itself (a wave ended, or --max-failures)."""
    if status.state == "PAUSED" and status.paused_reason:
        click.echo(f"voicemail: bulk {status.bulk_id} paused: {status.paused_reason}", err=True)
