"""Operations: `voicemail health` and `voicemail metrics`."""

from __future__ import annotations

import sys

import click

from .common import EXIT_JOB_NOT_OK


@click.command()
@click.option(
    "--node", help="Ping only this worker (e.g. celery@$HOSTNAME), for a container check."
)
@click.option("--api", "with_api", is_flag=True, help="Also check that the Plusofon API answers.")
def health(node: str | None, with_api: bool) -> None:
    """Check Redis, a live worker, the credential store's key and, with --api, the API."""
    from worker.core.settings import get_settings

    from .checks import run_checks

    checks = run_checks(get_settings(), node=node, api=with_api)
    for check in checks:
        click.echo(check.line())
    if not all(check.ok for check in checks):
        sys.exit(EXIT_JOB_NOT_OK)


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9808, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True)
def metrics(port: int, host: str) -> None:
    """Serve Prometheus metrics (queues, bulks, API latency and errors, rate limit, breaker)."""
    from .metrics import serve

    serve(port, host)
