"""`voicemail history` and `voicemail bulk journal`: the journal of changes, read back.

Both print one JSON entry per line (the documented shape, `JournalEntry.to_json`).
They read the store the settings name even with `VOICEMAIL_JOURNAL=off`: entries
written before it was turned off are still there (a note on stderr says it is off).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .bulk import _unknown, bulk
from .common import EXIT_JOB_NOT_OK

if TYPE_CHECKING:
    from worker.coordination.journal import Journal


def _journal() -> Journal:
    from worker.coordination.journal import journal_store
    from worker.core.connections import redis_client
    from worker.core.settings import get_settings

    settings = get_settings()
    if not settings.journal:
        click.echo("voicemail: note: VOICEMAIL_JOURNAL=off, no new entries are written", err=True)
    return journal_store(settings, redis_client(settings.redis_url))


@click.command("history")
@click.argument("account")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Entries to show."
)
def history(account: str, limit: int) -> None:
    """The changes of ACCOUNT's voicemail, newest first, one JSON object per line."""
    for entry in _journal().history(account, limit):
        click.echo(entry.to_json())


@bulk.command("journal")
@click.argument("bulk_id")
def bulk_journal(bulk_id: str) -> None:
    """The journal entries of BULK_ID in line order, one JSON object per line."""
    found = False
    for entry in _journal().bulk_entries(bulk_id):
        found = True
        click.echo(entry.to_json())
    if found:
        return
    from tasks.bulk import bulk_status

    if bulk_status(bulk_id).state == "UNKNOWN":
        _unknown(bulk_id)
    # a bulk that ran with the journal off, as a dry run, or longer ago than it keeps
    click.echo(f"voicemail: error: no journal entries for bulk {bulk_id}", err=True)
    sys.exit(EXIT_JOB_NOT_OK)
