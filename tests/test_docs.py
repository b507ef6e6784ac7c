"""The docs stay true: relative links resolve, every `voicemail ...` command shown exists in
the CLI, and the README stays a short reference.

Checked: README.md, docs/*.md, benchmarks/README.md and CHANGELOG.md. Each checker is a
plain function over a document's text, so a test can feed it a bad link or an unknown
command and see it reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import click
import pytest

from cli import cli as voicemail_group

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250


def doc_files() -> list[Path]:
    return [
        README,
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "benchmarks" / "README.md",
        ROOT / "CHANGELOG.md",
    ]


DOCS = doc_files()
DOC_IDS = [str(path.relative_to(ROOT)) for path in DOCS]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE_CODE = re.compile(r"`([^`]+)`")
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXTERNAL = ("http://", "https://", "mailto:", "#")
# `voicemail` where a command starts: at the start of a line or an inline code span, after a
# `$ ` prompt or a shell separator. Not `voicemail-worker`, `voicemail:dead` (a key),
# `voicemail.get` (a task), `voicemail_dead_letters` (a metric) or `/api/v1/voicemail`.
INVOCATION = re.compile(
    r"(?:^|[|;&(]|\$)[ \t]*voicemail(?![\w.:/-])((?:[ \t]+[a-z][a-z0-9|-]*)*)", re.M
)


def split_code(text: str) -> tuple[list[str], str]:
    """The bodies of fenced code blocks, and the text outside them."""
    return [m.group(1) for m in FENCE.finditer(text)], FENCE.sub("", text)


def link_targets(text: str) -> Iterator[str]:
    """Every link target of a Markdown text, outside code blocks and inline code."""
    _, prose = split_code(text)
    prose = INLINE_CODE.sub("", prose)
    for pattern in (INLINE_LINK, REFERENCE_LINK):
        for match in pattern.finditer(prose):
            yield match.group(1)


def broken_links(doc: Path, text: str) -> list[str]:
    """Relative link targets of `text` (written in `doc`) that name no existing file."""
    broken = []
    for target in link_targets(text):
        if target.startswith(EXTERNAL):
            continue
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    return broken


def invocations(text: str) -> Iterator[list[str]]:
    """The words after `voicemail` in every command shown, in code blocks and inline code."""
    blocks, prose = split_code(text)
    spans = [" ".join(m.group(1).split()) for m in INLINE_CODE.finditer(prose)]
    for snippet in (*blocks, *spans):
        for match in INVOCATION.finditer(snippet):
            yield match.group(1).split()


def unknown_command(
    words: Sequence[str],
    group: click.Group = voicemail_group,
    path: tuple[str, ...] = ("voicemail",),
) -> str | None:
    """The first command path of `voicemail WORDS...` that the CLI lacks, or None.

    Words are read as subcommands while they lead into groups; what follows a command
    is its arguments. `a|b` names alternatives, each of which must exist.
    """
    if not words:
        return None
    for name in words[0].split("|"):
        command = group.commands.get(name)
        if command is None:
            return " ".join((*path, name))
        if isinstance(command, click.Group):
            missing = unknown_command(words[1:], command, (*path, name))
            if missing is not None:
                return missing
    return None


def unknown_commands(text: str) -> list[str]:
    found = (unknown_command(words) for words in invocations(text))
    return sorted({missing for missing in found if missing is not None})


def too_long(text: str, limit: int = README_MAX_LINES) -> str | None:
    lines = len(text.splitlines())
    return f"{lines} lines, more than {limit}" if lines > limit else None


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_relative_links_resolve(doc: Path) -> None:
    assert broken_links(doc, doc.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_voicemail_commands_exist(doc: Path) -> None:
    assert unknown_commands(doc.read_text(encoding="utf-8")) == []


def test_readme_is_short() -> None:
    assert too_long(README.read_text(encoding="utf-8")) is None


def test_the_docs_show_commands_the_checker_sees() -> None:
    seen = {" ".join(words[:2]) for doc in DOCS for words in invocations(doc.read_text())}
    assert {"bulk submit", "accounts import", "dead retry", "health"} <= seen


def test_a_bad_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "real.md").write_text("# real\n")
    doc = tmp_path / "doc.md"
    text = (
        "[ok](real.md) [ok too](real.md#real) [web](https://example.com/missing.md)\n"
        "[anchor](#here) [mail](mailto:ops@example.com) [gone](missing.md#part)\n"
        "[ref]: nowhere/file.py\n"
        "```sh\n[not a link](in-code.md)\n```\n"
    )
    assert broken_links(doc, text) == ["missing.md#part", "nowhere/file.py"]


def test_an_unknown_command_is_reported() -> None:
    text = (
        "Run `voicemail nope --wait`, or `voicemail bulk submit changes.csv`.\n"
        "```sh\n"
        "voicemail bulk frobnicate 9f2c --wait\n"
        "printf 'x' | voicemail accounts import -\n"
        "voicemail dead list|resurrect …\n"
        "pip install voicemail-worker   # voicemail:dead, voicemail.get, /api/v1/voicemail\n"
        "```\n"
    )
    assert unknown_commands(text) == [
        "voicemail bulk frobnicate",
        "voicemail dead resurrect",
        "voicemail nope",
    ]


def test_a_long_readme_is_reported() -> None:
    assert too_long("line\n" * README_MAX_LINES) is None
    assert too_long("line\n" * (README_MAX_LINES + 1)) == "251 lines, more than 250"
