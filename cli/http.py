"""`voicemail serve` (the HTTP API) and `voicemail apikeys` (its callers' keys)."""

from __future__ import annotations

import os

import click
import redis

from .common import EXIT_JOB_NOT_OK, emit, fail


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=lambda: int(os.environ.get("PORT") or 8000),
    show_default="$PORT, else 8000",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (FastAPI on uvicorn); the schema is at /openapi.json."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        fail("voicemail serve needs the http extra: pip install 'voicemail-worker[http]'")
    from httpapi.app import serve as run

    run(host, port, workers)


@click.group()
def apikeys() -> None:
    """API keys of the services that call the HTTP API (stored hashed in Redis)."""


def _client() -> redis.Redis:
    from worker.core.connections import redis_client
    from worker.core.settings import get_settings

    return redis_client(get_settings().redis_url)


@apikeys.command("add")
@click.argument("name")
@click.option(
    "--accounts",
    default="*",
    show_default=True,
    metavar="GLOB",
    help="The accounts this key may use, as a shell glob (fnmatch), e.g. 'acme-*'.",
)
def apikeys_add(name: str, accounts: str) -> None:
    """Make a key for the service NAME and print it: it is shown this once only."""
    from httpapi import keystore

    key = keystore.add(_client(), name, accounts)
    click.echo(key)
    click.echo(f"voicemail: key {name!r} made; it is not shown again", err=True)


@apikeys.command("list")
def apikeys_list() -> None:
    """The keys: name, accounts glob, created time (never the key), one JSON line each."""
    from httpapi import keystore

    for key in keystore.list_keys(_client()):
        emit(key.as_dict())


@apikeys.command("revoke")
@click.argument("name")
def apikeys_revoke(name: str) -> None:
    """Revoke NAME's key: the next request with it is refused."""
    from httpapi import keystore

    if not keystore.revoke(_client(), name):
        click.echo(f"voicemail: error: no API key named {name!r}", err=True)
        raise SystemExit(EXIT_JOB_NOT_OK)
    click.echo(f"voicemail: key {name!r} revoked", err=True)
