"""`voicemail bulk verify`, `bulk plan` and `bulk apply`: bulks that read before anyone
writes.

- `verify FILE [--fix]`: is every account as FILE says? Reads each one through the queue
  (a bulk that never PATCHes); prints `{"bulk_id", "checked", "matching", "drifted",
  "unreachable", "invalid"}`, names each drifted row on stderr, exits 3 unless every
  account matches. `--fix` submits the drifted rows as a new bulk (`fix_bulk_id`).
- `plan FILE [--out PLAN.jsonl]`: what would FILE change? Reads each account the same
  way and keeps what it read for `VOICEMAIL_PLAN_TTL`; prints `{"plan_id", "total",
  "change", "unchanged", "unreachable", "invalid", "estimate_seconds"}`.
- `apply PLAN_ID`: queues the plan's rows to change, each sent only if its account still
  holds what the plan read (else `Stale:`); prints `{"bulk_id", "plan_id"}`.

Each follows its bulk with the progress bar of `bulk submit --wait` on stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import IO, Any

import click

from .bulk import SHOWN_FAILURES, _finish, _follow, _name_failures, _unknown
from .bulk_schedule import note_scheduled, schedule_options
from .bulk_waves import rollout_options
from .common import EXIT_JOB_NOT_OK, emit
from .who import who_options

EXIT_DRIFTED = 3  # `bulk verify`: some account drifted, could not be read, or was invalid

_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "csv", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format; auto looks at the extension, then the first line.",
)
_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=24 * 3600.0,
    help="Seconds to wait for the bulk to finish.",
)


def _name_verify_rows(bulk_id: str) -> None:
    """On stderr: each drifted row as `line N: ACCOUNT: vendor has ...`, and each other
    failed row as `bulk submit` names it; 20 of each, then a count."""
    from tasks.bulk import bulk_failures
    from tasks.bulk.verify import DRIFTED_PREFIX

    counts = {"drifted": 0, "failed": 0}
    for failure in bulk_failures(bulk_id):
        reason = str(failure.get("reason"))
        kind = "drifted" if reason.startswith(DRIFTED_PREFIX) else "failed"
        counts[kind] += 1
        if counts[kind] <= SHOWN_FAILURES:
            shown = reason.removeprefix(DRIFTED_PREFIX)
            account = failure.get("account") or "-"
            click.echo(f"line {failure.get('line')}: {account}: {shown}", err=True)
    for kind, count in counts.items():
        if count > SHOWN_FAILURES:
            click.echo(
                f"{count - SHOWN_FAILURES} more {kind} rows not shown: "
                f"voicemail bulk failures {bulk_id}",
                err=True,
            )


def _fix(bulk_id: str, timeout: float) -> str | None:
    """Submit the drifted rows and follow the fix to its end; its id."""
    from tasks.bulk import fix_drifted

    fix_id = fix_drifted(bulk_id)
    if fix_id is not None:
        fixed = _follow(fix_id, timeout)
        if fixed.failed or not fixed.done:
            click.echo(
                f"voicemail: fix bulk {fix_id} is {fixed.state.lower()} with {fixed.failed} "
                f"failed rows: voicemail bulk failures {fix_id}",
                err=True,
            )
    return fix_id


@click.command("verify")
@click.argument("file")
@click.option("--fix", is_flag=True, help="Submit the drifted rows, with FILE's values.")
@_format_option
@_timeout_option
def bulk_verify(file: str, fix: bool, fmt: str, timeout: float) -> None:
    """Check that every account holds what FILE says (as `bulk submit` reads it), sending
    nothing. Exit 0 when all match, 3 when any drifted, could not be read or was invalid."""
    from tasks.bulk import verify_bulk, verify_summary

    from .row_files import open_input, read_rows

    with open_input(file) as fh:
        bulk_id = verify_bulk(read_rows(fh, fmt, file))
    status = _follow(bulk_id, timeout)
    _name_verify_rows(bulk_id)
    summary = verify_summary(status)
    if fix:
        summary["fix_bulk_id"] = _fix(bulk_id, timeout)
    emit(summary)
    if status.state != "DONE":  # cancelled, or not finished within --timeout
        sys.exit(EXIT_JOB_NOT_OK)
    if summary["matching"] != summary["checked"]:
        sys.exit(EXIT_DRIFTED)


def _open_out(path: str) -> IO[str]:
    from worker.core.errors import InputError

    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


@click.command("plan")
@click.argument("file")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write every row's action, one JSON object per line.",
)
@_format_option
@_timeout_option
@who_options
def bulk_plan(
    file: str, out: str | None, fmt: str, timeout: float, actor: str, reason: str | None
) -> None:
    """Read every account of FILE and say what applying it would change, sending
    nothing. The plan is kept VOICEMAIL_PLAN_TTL seconds for `voicemail bulk apply`."""
    from tasks.bulk import keep_plan, plan_bulk, plan_rows, plan_summary

    from .row_files import open_input, read_rows

    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open_input(file))
        # Opened first: a path that cannot be written fails before any account is read.
        sink = stack.enter_context(_open_out(out)) if out else None
        plan_id = plan_bulk(read_rows(fh, fmt, file), actor=actor, reason=reason)
        status = _follow(plan_id, timeout)
        if status.state != "DONE":
            emit(status.summary())
            click.echo(
                f"voicemail: error: plan {plan_id} is {status.state.lower()}: not made",
                err=True,
            )
            sys.exit(EXIT_JOB_NOT_OK)
        keep_plan(plan_id)
        if status.failed:
            _name_failures(plan_id, status.failed)
        if sink is not None:
            for row in plan_rows(plan_id):
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    emit(plan_summary(status))


@click.command("apply")
@click.argument("plan_id")
@click.option("--wait", is_flag=True, help="Show progress on stderr and print a summary.")
@click.option("--dry-run", is_flag=True, help="Check every row and count what would be sent.")
@click.option("--only-changed", is_flag=True, help="Skip accounts already in the target state.")
@_timeout_option
@click.option("--idempotency-key", help="Applying again with this key queues nothing new.")
@click.option("--revertible", is_flag=True, help="Keep what each account held, for revert.")
@click.option("--notify", metavar="TASK", help="Celery task sent, with the status, at the end.")
@click.option("--notify-queue", metavar="QUEUE", help="Queue for --notify.")
@who_options
@schedule_options
@rollout_options
def bulk_apply(plan_id: str, wait: bool, dry_run: bool, **options: Any) -> None:
    """Queue the rows PLAN_ID would change, as a bulk. A row is sent only if its account
    still holds what the plan read; one changed since fails as `Stale:`. Once per plan."""
    from tasks.bulk import apply_plan, bulk_status

    timeout = options.pop("timeout")
    if bulk_status(plan_id).state == "UNKNOWN":
        _unknown(plan_id)
    new_id = apply_plan(plan_id, dry_run=dry_run, **options)
    status = bulk_status(new_id)
    note_scheduled(status)
    if dry_run or wait:
        _finish(_follow(new_id, timeout) if wait and not dry_run else status, wait=True)
        return
    emit({"bulk_id": new_id, "plan_id": plan_id})
    if status.failed:  # rows refused at submission (an account left the store since)
        _name_failures(new_id, status.failed)
        sys.exit(EXIT_JOB_NOT_OK)


COMMANDS = (bulk_verify, bulk_plan, bulk_apply)
