"""`voicemail dead`: jobs that failed for good."""

from __future__ import annotations

import re

import click

from .common import emit

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float:
    """`7d`, `12h`, `30m`, `90s`, `2w` (or plain seconds) in seconds; a usage error if not."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not found:
        raise click.BadParameter(f"{text!r}: a number and a unit (s, m, h, d, w), e.g. 7d")
    return float(found[1]) * UNITS[found[2] or "s"]


@click.group()
def dead() -> None:
    """Jobs that failed for good: list them, send them again, purge them."""


@dead.command("list")
def dead_list() -> None:
    """One JSON object per dead job, oldest first: id, task, args, error, failed_at (UTC)."""
    from tasks.producer import dead_letters

    for letter in dead_letters():
        emit(letter.as_dict())


@dead.command("retry")
@click.argument("job_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Re-drive every dead job.")
@click.option(
    "--include-permanent",
    is_flag=True,
    help="With --all, also re-drive permanent failures (bad input, unknown account, ...).",
)
def dead_retry(job_id: str | None, everything: bool, include_permanent: bool) -> None:
    """Send JOB_ID (or --all) again under a new id; prints {"id": old, "new_id": new}.

    --all skips permanent failures (InputError, AccountNotFound, CredentialError, the API's
    permanent errors, Expired), which would fail the same way again, unless
    --include-permanent; JOB_ID is sent whatever its failure."""
    from tasks.producer import dead_letters, redrive

    if bool(job_id) == everything:
        raise click.UsageError("give one JOB_ID or --all")
    if include_permanent and not everything:
        raise click.UsageError("--include-permanent goes with --all")
    if everything:
        letters = list(dead_letters())
        ids = [d.id for d in letters if include_permanent or not d.permanent]
        skipped = len(letters) - len(ids)
        if skipped:
            click.echo(
                f"skipped {skipped} permanent failure(s); --include-permanent sends them too",
                err=True,
            )
    else:
        ids = [str(job_id)]
    for old in ids:
        emit({"id": old, "new_id": redrive(old)})


@dead.command("purge")
@click.option(
    "--older-than",
    "older_than",
    help="Only letters that failed longer ago than this: 7d, 12h, 30m (default: all).",
)
def dead_purge(older_than: str | None) -> None:
    """Drop dead letters (all, or those older than --older-than); prints {"purged": N}."""
    from tasks.producer import purge_dead_letters

    seconds = None if older_than is None else parse_duration(older_than)
    emit({"purged": purge_dead_letters(seconds)})
