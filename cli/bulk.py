"""`voicemail bulk`: submit a file of changes, follow it, list and retry its failures,
cancel, pause, resume or revert it, and list recent bulks."""

from __future__ import annotations

import csv
import itertools
import sys
import time
from typing import Any

import click

from .bulk_schedule import cancel_revert_cmd, note_scheduled, schedule_options
from .bulk_waves import rollout_options, rows_for, stopped_line
from .common import EXIT_JOB_NOT_OK, emit
from .who import who_options


@click.group()
def bulk() -> None:
    """Update many accounts at once from a CSV or JSON Lines file."""


def _follow(bulk_id: str, timeout: float) -> Any:
    """Show a progress bar on stderr until the bulk is done; return its final status."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tasks.bulk import bulk_status

    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("bulk {task.fields[bulk_id]:.8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        bar = progress.add_task("bulk", total=None, bulk_id=bulk_id, rate=0.0, failed=0)
        while True:
            status = bulk_status(bulk_id)
            progress.update(
                bar,
                total=status.total or None,
                completed=status.total - status.pending,
                rate=status.rate,
                failed=status.failed,
            )
            # A bulk that paused itself (bulk_waves) waits for someone: say so, now.
            if status.done or status.paused_reason or time.monotonic() > deadline:
                return status
            time.sleep(0.2)


SHOWN_FAILURES = 20


def _unknown(bulk_id: str) -> None:
    """Every bulk command answers an unknown id the same way: one line, exit 1."""
    click.echo(f"voicemail: error: no bulk {bulk_id} (never submitted, or expired)", err=True)
    sys.exit(EXIT_JOB_NOT_OK)


def _name_failures(bulk_id: str, failed: int) -> None:
    """One stderr line per failed row, `line N: ACCOUNT: reason`, the first 20 of them."""
    from tasks.bulk import bulk_failures

    for failure in itertools.islice(bulk_failures(bulk_id), SHOWN_FAILURES):
        account = failure.get("account") or "-"
        click.echo(f"line {failure.get('line')}: {account}: {failure.get('reason')}", err=True)
    if failed > SHOWN_FAILURES:
        click.echo(
            f"{failed - SHOWN_FAILURES} more failed rows not shown: "
            f"voicemail bulk failures {bulk_id}",
            err=True,
        )


def _finish(status: Any, wait: bool) -> None:
    if status.failed and (wait or status.state == "DRY_RUN"):
        _name_failures(status.bulk_id, status.failed)
    stopped_line(status)
    emit(status.summary() if wait or status.state == "DRY_RUN" else {"bulk_id": status.bulk_id})
    if status.state in ("UNKNOWN", "CANCELLED") or status.failed or (wait and not status.done):
        sys.exit(EXIT_JOB_NOT_OK)


@bulk.command("submit")
@click.argument("file")
@click.option("--wait", is_flag=True, help="Show progress on stderr and print a summary.")
@click.option("--dry-run", is_flag=True, help="Check every row and count what would be sent.")
@click.option("--only-changed", is_flag=True, help="Skip accounts already in the target state.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "csv", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format; auto looks at the extension, then the first line.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=24 * 3600.0,
    help="Seconds to wait with --wait.",
)
@click.option("--idempotency-key", help="Submitting again with this key queues nothing new.")
@click.option(
    "--revertible",
    is_flag=True,
    help="Read each account first and keep what it held, for `voicemail bulk revert`.",
)
@click.option(
    "--notify",
    metavar="TASK",
    help="Celery task sent by name, with the status, once the bulk settles.",
)
@click.option(
    "--notify-queue",
    metavar="QUEUE",
    help="Queue for --notify (default voicemail.notify, which no worker here consumes).",
)
@who_options
@schedule_options
@rollout_options
def bulk_submit(
    file: str,
    wait: bool,
    dry_run: bool,
    only_changed: bool,
    fmt: str,
    timeout: float,
    idempotency_key: str | None,
    revertible: bool,
    notify: str | None,
    notify_queue: str | None,
    actor: str,
    reason: str | None,
    at: str | None,
    revert_after: str | None,
    **rollout: Any,
) -> None:
    """Queue the rows of FILE (header account,send,email; .jsonl for JSON Lines; - for stdin)."""
    from tasks.bulk import bulk_status, submit_bulk

    from .row_files import open_input, read_rows

    with open_input(file) as fh:
        bulk_id = submit_bulk(
            rows_for(file, fmt, read_rows(fh, fmt, file), rollout),
            dry_run=dry_run,
            only_changed=only_changed,
            revertible=revertible,
            notify=notify,
            notify_queue=notify_queue,
            idempotency_key=idempotency_key,
            actor=actor,
            reason=reason,
            at=at,
            revert_after=revert_after,
            **rollout,
        )
    status = bulk_status(bulk_id)
    note_scheduled(status)
    if dry_run:
        _finish(status, wait=True)
        return
    if wait:
        status = _follow(bulk_id, timeout)
    _finish(status, wait)


@bulk.command("status")
@click.argument("bulk_id")
def bulk_status_cmd(bulk_id: str) -> None:
    """The progress of a bulk: counts, start and finish times, current rate."""
    from tasks.bulk import bulk_status

    status = bulk_status(bulk_id)
    emit(status.as_dict())  # {"state": "UNKNOWN", ...} too, for scripts that read stdout
    if status.state == "UNKNOWN":
        _unknown(bulk_id)


def _change(bulk_id: str, op: Any, why_not: str) -> None:
    """Cancel, pause or resume; print the status, and say so on stderr if nothing changed."""
    from tasks.bulk import bulk_status, change_bulk

    if bulk_status(bulk_id).state == "UNKNOWN":
        _unknown(bulk_id)
    changed, status = change_bulk(bulk_id, op)
    emit(status.as_dict())
    if not changed:
        state = status.state.lower() if status.state != "DONE" else "done"
        click.echo(f"voicemail: bulk {bulk_id} is {state}: {why_not}", err=True)


@bulk.command("cancel")
@click.argument("bulk_id")
@click.option("--revert", is_flag=True, help="Drop only its timed revert (--revert-after).")
def bulk_cancel(bulk_id: str, revert: bool) -> None:
    """Stop BULK_ID: no new request for it; requests in flight finish. Prints its status."""
    if revert:
        from tasks.bulk import bulk_status

        if bulk_status(bulk_id).state == "UNKNOWN":
            _unknown(bulk_id)
        cancel_revert_cmd(bulk_id)
        return
    _change(bulk_id, "cancel", "nothing to cancel")


@bulk.command("pause")
@click.argument("bulk_id")
def bulk_pause(bulk_id: str) -> None:
    """Hold BULK_ID: no new request for it until `resume`; requests in flight finish."""
    _change(bulk_id, "pause", "nothing to pause")


@bulk.command("resume")
@click.argument("bulk_id")
def bulk_resume(bulk_id: str) -> None:
    """Let a paused BULK_ID go on where it stopped."""
    _change(bulk_id, "resume", "not paused, nothing to resume")


@bulk.command("revert")
@click.argument("bulk_id")
@click.option("--wait", is_flag=True, help="Show progress on stderr and print a summary.")
@click.option("--timeout", type=click.FloatRange(min=0), default=24 * 3600.0)
@who_options
def bulk_revert(bulk_id: str, wait: bool, timeout: float, actor: str, reason: str | None) -> None:
    """Put every account a --revertible BULK_ID changed back, as a new bulk.

    An account changed since by anyone else is left alone, and listed as failed
    (Conflict) by `voicemail bulk failures` of the new bulk.
    """
    from tasks.bulk import bulk_status, revert_bulk

    if bulk_status(bulk_id).state == "UNKNOWN":
        _unknown(bulk_id)
    new_id = revert_bulk(bulk_id, actor=actor, reason=reason)
    status = _follow(new_id, timeout) if wait else bulk_status(new_id)
    _finish(status, wait)


@bulk.command("list")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Bulks to show."
)
def bulk_list(limit: int) -> None:
    """The most recent bulks, newest first, one JSON object per line."""
    from tasks.bulk import list_bulks

    for status in list_bulks(limit):
        emit(status.listing())


@bulk.command("failures")
@click.argument("bulk_id")
def bulk_failures_cmd(bulk_id: str) -> None:
    """The failed rows as CSV (account,send,email,line,reason), ready to fix and resubmit.

    A cell starting with =, +, - or @ is written with a leading ' so that a spreadsheet
    shows it instead of running it; `bulk submit` removes that quote again."""
    from tasks.bulk import bulk_failures, bulk_status

    from .row_files import spreadsheet_safe

    if bulk_status(bulk_id).state == "UNKNOWN":
        _unknown(bulk_id)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["account", "send", "email", "line", "reason"])
    for failure in bulk_failures(bulk_id):
        send = failure.get("send")
        cells = [
            failure.get("account") or "",
            str(send).lower() if isinstance(send, bool) else (send or ""),
            failure.get("email") or "",
            failure.get("line"),
            failure.get("reason"),
        ]
        writer.writerow([spreadsheet_safe(c) if isinstance(c, str) else c for c in cells])


@bulk.command("retry")
@click.argument("bulk_id")
@click.option("--wait", is_flag=True, help="Show progress on stderr and print a summary.")
@click.option("--timeout", type=click.FloatRange(min=0), default=24 * 3600.0)
def bulk_retry(bulk_id: str, wait: bool, timeout: float) -> None:
    """Submit the failed rows of BULK_ID again, as a new bulk."""
    from tasks.bulk import bulk_status, retry_bulk

    if bulk_status(bulk_id).state == "UNKNOWN":
        _unknown(bulk_id)
    new_id = retry_bulk(bulk_id)
    status = _follow(new_id, timeout) if wait else bulk_status(new_id)
    _finish(status, wait)
