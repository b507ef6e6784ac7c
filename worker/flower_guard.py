"""Flower refuses to start with an empty `FLOWER_BASIC_AUTH`.

Flower splits the variable on commas, so "" becomes `['']`: basic auth is on and no
credential matches it, and an operator who meant to set a password but left it empty
gets a Flower nobody can open (or, behind a proxy that strips auth, one that looks
configured). `check()` runs when `celery -A worker flower` loads the app: it stops the
process with one line naming the variable instead. Imports nothing from the project.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import click

MESSAGE = (
    "FLOWER_BASIC_AUTH is set but empty: set it to user:password "
    "(comma-separate several) or unset it"
)


def running_flower() -> bool:
    """Is this `celery ... flower`? Celery loads the app inside its command group's
    callback, where click already knows which subcommand comes next."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.invoked_subcommand == "flower" or ctx.info_name == "flower":
            return True
        ctx = ctx.parent
    return False


def empty_basic_auth(environ: Mapping[str, str]) -> bool:
    value = environ.get("FLOWER_BASIC_AUTH")
    return value is not None and not any(pair.strip() for pair in value.split(","))


def check(environ: Mapping[str, str] = os.environ) -> None:
    if running_flower() and empty_basic_auth(environ):
        sys.exit(f"error: {MESSAGE}")
