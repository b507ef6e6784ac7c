"""One exit-code table for every `voicemail` command (docs/cli.md, cli/common.py)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from cli.common import EXIT_CODES, EXIT_NOT_OK, EXIT_UNREACHABLE, EXIT_USAGE

from .conftest import VOICEMAIL

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "11111111-2222-3333-4444-555555555555"


def test_the_docs_table_is_the_codes_table() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = {int(code) for code in re.findall(r"^\| `(\d)` \|", text, re.M)}
    assert documented == set(EXIT_CODES) == {0, 1, 2, 3, 4}
    assert "docs/cli.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_no_command_exits_with_a_number_of_its_own() -> None:
    """Every exit goes through a name of cli/common.py: no `sys.exit(2)`, `fail(..., 3)`."""
    literal = []
    for path in sorted((ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("sys.exit", "exit", "ctx.exit", "fail", "SystemExit"):
                numbers = [
                    a
                    for a in (*node.args, *(k.value for k in node.keywords))
                    if isinstance(a, ast.Constant) and isinstance(a.value, int)
                ]
                if numbers:
                    literal.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert literal == []


@pytest.mark.parametrize(
    "args",
    [
        ("result", UNKNOWN),
        ("dead", "retry", UNKNOWN),
        ("bulk", "status", UNKNOWN),
        ("bulk", "revert", UNKNOWN),
        ("get", "no-such-account-anywhere"),
        ("accounts", "remove", "no-such-account-anywhere"),
    ],
    ids=" ".join,
)
def test_not_found_is_1(args: tuple[str, ...]) -> None:
    assert CliRunner().invoke(cli, list(args)).exit_code == EXIT_NOT_OK


@pytest.mark.parametrize(
    "args",
    [
        ("update", "acme", "--send", "--email", "nope"),
        ("update", "acme", "--email", "a@b.ru"),
        ("dead", "retry"),
        ("dead", "purge", "--older-than", "soon"),
        ("no-such-command",),
    ],
    ids=" ".join,
)
def test_usage_and_refusals_are_2(args: tuple[str, ...]) -> None:
    assert CliRunner().invoke(cli, list(args)).exit_code == EXIT_USAGE


def test_an_unreachable_redis_is_4_for_every_command_that_needs_it() -> None:
    commands = [
        ("get", "acme"),
        ("update", "acme", "--send", "--email", "a@b.ru"),
        ("result", UNKNOWN),
        ("dead", "list"),
        ("dead", "retry", "--all"),
        ("bulk", "status", UNKNOWN),
        ("accounts", "list"),
    ]
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}

    def run(args: tuple[str, ...]) -> tuple[tuple[str, ...], int, str]:
        done = subprocess.run(
            [VOICEMAIL, *args], env=env, capture_output=True, text=True, timeout=60
        )
        return args, done.returncode, done.stderr

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, commands))
    wrong = [f"{' '.join(a)}: {code} {err!r}" for a, code, err in results if code != 4]
    assert not wrong, "\n".join(wrong)
    assert all("Traceback" not in err for *_, err in results)
    assert EXIT_UNREACHABLE == 4
