"""Lua scripts live in `.lua` files next to the module that runs them (package data).

Constants that Python and Lua share (verdict and outcome codes) are defined once, in
Python, and handed to the script as `local NAME = value` lines put before its text, so
a `.lua` file names them and never repeats their values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources


def _literal(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a Lua constant must be an int or a str, got {value!r}")
    return str(value) if isinstance(value, int) else json.dumps(value)


def load(
    package: str,
    name: str,
    constants: Mapping[str, object] | None = None,
    include: Sequence[str] = (),
) -> str:
    """The text of `name` in `package`, after one `local` line per constant and the text
    of each file in `include` (functions shared by several scripts)."""
    files = resources.files(package)
    body = files.joinpath(name).read_text(encoding="utf-8")
    prelude = "".join(f"local {key} = {_literal(v)}\n" for key, v in (constants or {}).items())
    shared = "".join(files.joinpath(f).read_text(encoding="utf-8") for f in include)
    return prelude + shared + body
