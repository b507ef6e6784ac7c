"""Single jobs: `voicemail get`, `update` and `result`."""

from __future__ import annotations

import sys

import click

from .common import EXIT_JOB_NOT_OK, emit, timeout_option, wait_option
from .who import who_options


def _report(job_id: str, wait: bool, timeout: float) -> None:
    from tasks.producer import wait as wait_for

    if not wait:
        emit({"id": job_id})
        return
    status = wait_for(job_id, timeout)
    emit(status.as_dict())
    if not status.ok:
        sys.exit(EXIT_JOB_NOT_OK)


@click.command()
@click.argument("account")
@wait_option
@timeout_option
def get(account: str, wait: bool, timeout: float) -> None:
    """Enqueue a read of ACCOUNT's voicemail settings."""
    from tasks.producer import enqueue_get

    _report(enqueue_get(account), wait, timeout)


@click.command()
@click.argument("account")
@click.option("--send/--no-send", "send", default=None, help="Turn sending recordings on or off.")
@click.option("--email", required=True, help="Where recordings are sent.")
@click.option("--idempotency-key", help="Repeating the command with this key queues nothing new.")
@who_options
@wait_option
@timeout_option
def update(
    account: str,
    send: bool | None,
    email: str,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    actor: str,
    reason: str | None,
) -> None:
    """Enqueue a change of ACCOUNT's voicemail settings."""
    from tasks.producer import enqueue_update

    if send is None:
        raise click.UsageError("one of --send or --no-send is required")
    job_id = enqueue_update(
        account, send, email, idempotency_key=idempotency_key, actor=actor, reason=reason
    )
    _report(job_id, wait, timeout)


@click.command()
@click.argument("job_id")
@wait_option
@timeout_option
def result(job_id: str, wait: bool, timeout: float) -> None:
    """Show the state and result of any job id."""
    from tasks.producer import poll
    from tasks.producer import wait as wait_for

    status = wait_for(job_id, timeout) if wait else poll(job_id)
    emit(status.as_dict())
    if not status.ok:
        sys.exit(EXIT_JOB_NOT_OK)
