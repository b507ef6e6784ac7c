"""The `voicemail` command line, one module per command group.

Job commands print one JSON object on stdout and exit 0 only on SUCCESS. Expected errors
print one line on stderr. Exit codes, one table for every command (`common`, docs/cli.md):
0 ok; 1 not found or a failed job; 2 usage or a refusal; 3 a check found something;
4 Redis or the broker unreachable.

Commands import the producer API inside their functions: the Celery app reads the
environment when it is built, and a bad variable must come out as one line on
stderr from the command, not as a traceback from `voicemail --help`.
Layer: the top. May import `httpapi`, `tasks`, `worker` and `simulator`; nothing imports it.
"""

from __future__ import annotations

import click

from worker.core.errors import VoicemailError

from .accounts import accounts
from .bulk import bulk
from .bulk_checks import COMMANDS as BULK_CHECKS
from .common import Group, exit_code_for, fail
from .dead import dead
from .history import history  # also adds `bulk journal` to the bulk group
from .http import apikeys, serve
from .jobs import get, result, update
from .local import demo, simulator
from .ops import health, metrics


@click.group(cls=Group)
@click.version_option(package_name="voicemail-worker")
def cli() -> None:
    """Read and change Plusofon voicemail settings through the job queue."""


for command in (
    get,
    update,
    result,
    accounts,
    bulk,
    dead,
    health,
    metrics,
    serve,
    apikeys,
    demo,
    simulator,
):
    cli.add_command(command)
cli.add_command(history)
for command in BULK_CHECKS:  # bulk verify, plan and apply
    bulk.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except VoicemailError as exc:
        fail(str(exc), exit_code_for(exc))


__all__ = ["cli", "main"]
