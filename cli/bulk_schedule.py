"""`--at` and `--revert-after` of `bulk submit` and `bulk apply`, and `bulk cancel
--revert`: change windows and timed undo (tasks.bulk.schedule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .common import emit

F = Callable[..., Any]


def schedule_options(command: F) -> F:
    """The two options, for a command that passes `at` and `revert_after` on."""
    command = click.option(
        "--at",
        metavar="WHEN",
        help="Start then, not now (SCHEDULED until): ISO 8601 with an offset, or +30m, +2h.",
    )(command)
    return click.option(
        "--revert-after",
        metavar="DURATION",
        help="Revert the bulk this long after it settles (20s, 30m, 2h); implies --revertible.",
    )(command)


def note_scheduled(status: Any) -> None:
    """Say on stderr when a bulk waits for its time."""
    if status.state == "SCHEDULED":
        as_dict = status.as_dict()
        click.echo(
            f"bulk {status.bulk_id} is scheduled: it starts at {as_dict['scheduled_at']}",
            err=True,
        )


def cancel_revert_cmd(bulk_id: str) -> None:
    """`bulk cancel BULK_ID --revert`: drop only the timed revert; print the status."""
    from tasks.bulk import bulk_status
    from tasks.bulk.schedule import cancel_revert

    dropped = cancel_revert(bulk_id)
    status = bulk_status(bulk_id)
    emit(status.as_dict())
    if not dropped:
        started = f": its revert started as bulk {status.reverted_by}" if status.reverted_by else ""
        click.echo(f"voicemail: bulk {bulk_id} has no timed revert to cancel{started}", err=True)
