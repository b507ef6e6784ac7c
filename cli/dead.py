"""`voicemail dead`: jobs that failed for good."""

from __future__ import annotations

import click

from .common import emit


@click.group()
def dead() -> None:
    """Jobs that failed for good: list them, send them again."""


@dead.command("list")
def dead_list() -> None:
    """One JSON object per dead job, oldest first: id, task, args, error, failed_at."""
    from tasks.producer import dead_letters

    for letter in dead_letters():
        emit(letter.as_dict())


@dead.command("retry")
@click.argument("job_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Re-drive every dead job.")
def dead_retry(job_id: str | None, everything: bool) -> None:
    """Send JOB_ID (or --all) again under a new id; prints {"id": old, "new_id": new}."""
    from tasks.producer import dead_letters, redrive

    if bool(job_id) == everything:
        raise click.UsageError("give one JOB_ID or --all")
    ids = [letter.id for letter in dead_letters()] if everything else [str(job_id)]
    for old in ids:
        emit({"id": old, "new_id": redrive(old)})
