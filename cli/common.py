"""What every `voicemail` command shares: exit codes, one-line errors, JSON output.

The exit codes, one table for every command (docs/cli.md; tests/test_exit_codes.py):

    0  ok
    1  not found: an unknown id or account, a job that failed or did not finish in time,
       an unhealthy `health`
    2  usage, or a refusal: a bad argument or setting, a revert or apply not allowed
    3  a check that found something (`bulk verify`)
    4  Redis or the broker cannot be reached
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
import kombu.exceptions
import redis

from worker.core.errors import AccountNotFound, NotFound, QueueUnavailable, VoicemailError

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_NOT_OK: "not found, unknown id, a failed job, an unhealthy health",
    EXIT_USAGE: "usage or a refusal",
    EXIT_FOUND: "a check that found something",
    EXIT_UNREACHABLE: "Redis or the broker unreachable",
}
# Older names, kept for the modules that use them.
EXIT_JOB_NOT_OK = EXIT_NOT_OK
EXIT_ERROR = EXIT_USAGE


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, QueueUnavailable | redis.ConnectionError | redis.TimeoutError):
        return EXIT_UNREACHABLE
    if isinstance(exc, kombu.exceptions.OperationalError):
        return EXIT_UNREACHABLE
    if isinstance(exc, NotFound | AccountNotFound):
        return EXIT_NOT_OK
    return EXIT_USAGE


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"voicemail: error: {message}", err=True)
    sys.exit(code)


def emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


class Group(click.Group):
    """Turns our expected errors into one line on stderr and the table's exit code, never a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VoicemailError as exc:
            fail(str(exc), exit_code_for(exc))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            fail(f"cannot reach Redis: {exc}", EXIT_UNREACHABLE)
        except kombu.exceptions.OperationalError as exc:
            fail(f"cannot reach the broker: {exc}", EXIT_UNREACHABLE)


wait_option = click.option("--wait", is_flag=True, help="Wait for the result and print it.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait with --wait.",
)
