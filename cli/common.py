"""What every `voicemail` command shares: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
import redis

from worker.core.errors import VoicemailError

EXIT_JOB_NOT_OK = 1
EXIT_ERROR = 2


def fail(message: str) -> NoReturn:
    click.echo(f"voicemail: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


class Group(click.Group):
    """Turns our expected errors into one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VoicemailError as exc:
            fail(str(exc))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            fail(f"cannot reach Redis: {exc}")


wait_option = click.option("--wait", is_flag=True, help="Wait for the result and print it.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait with --wait.",
)
