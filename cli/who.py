"""`--actor` and `--reason`: who asks for a change and why, for the journal of changes
(`voicemail history`). On `update`, `bulk submit`, `bulk plan`, `bulk apply` and
`bulk revert`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _default_actor() -> str:
    from worker.core.validation import default_actor

    return default_actor()


def who_options(function: F) -> F:
    """Adds `actor` and `reason` to the command's keyword arguments."""
    function = click.option(
        "--reason",
        metavar="TEXT",
        help="Why: kept in the journal with every change "
        "(required for long bulks when VOICEMAIL_REASON_REQUIRED_ROWS is set).",
    )(function)
    return click.option(
        "--actor",
        metavar="NAME",
        default=_default_actor,
        show_default="$USER@host",
        help="Who asks for the change, as the journal records it.",
    )(function)
