"""Streaming readers for bulk input: CSV with header `account,send,email`, or JSON Lines.

Each line becomes a `BulkRow` or a `RowError` naming its line number and what is
wrong; one bad line never stops the file. Bytes that are not UTF-8 make a bad row.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from worker.coordination.bulk_records import BulkRow, RowError
from worker.core.errors import InputError
from worker.core.validation import parse_send

COLUMNS = ("account", "send", "email")
csv.field_size_limit(1 << 20)
# A cell a spreadsheet would run as a formula (OWASP's "CSV injection"): what we write
# gets a leading quote (`spreadsheet_safe`), and what we read loses it again
# (`unquote_formula`), so a failures file stays ready to resubmit.
FORMULA_STARTS = ("=", "+", "-", "@")


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def unquote_formula(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


def _bad_text(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _row(line: int, record: dict[str, Any]) -> BulkRow | RowError:
    raw = {k: record.get(k) for k in COLUMNS}
    missing = [k for k in COLUMNS if record.get(k) is None]
    if missing:
        return RowError(line, f"missing column {', '.join(missing)}", raw)
    for key in ("account", "email"):
        if not isinstance(record[key], str):
            return RowError(line, f"{key} must be a string", raw)
    if any(_bad_text(str(v)) for v in raw.values()):
        return RowError(line, "the line is not valid UTF-8", _printable(raw))
    try:
        send = parse_send(record["send"])
    except InputError as exc:
        return RowError(line, str(exc), raw)
    account, email = (unquote_formula(record[k].strip()) for k in ("account", "email"))
    return BulkRow(line, account, send, email)


def _printable(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if isinstance(v, str)
        else v
        for k, v in raw.items()
    }


def read_csv(fh: IO[str]) -> Iterator[BulkRow | RowError]:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"unreadable CSV header: {exc}") from None
    names = [h.strip().lower() for h in header]
    absent = [c for c in COLUMNS if c not in names]
    if absent:
        raise InputError(
            f"the CSV header must name account,send,email; missing {', '.join(absent)}"
        )
    index = {name: names.index(name) for name in COLUMNS}
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(reader.line_num, f"unreadable CSV: {exc}")
            continue
        if not any(v.strip() for v in values):
            continue
        record = {k: values[i] if i < len(values) else None for k, i in index.items()}
        yield _row(reader.line_num, record)


def read_jsonl(fh: IO[str]) -> Iterator[BulkRow | RowError]:
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        if _bad_text(text):
            yield RowError(line, "the line is not valid UTF-8")
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield RowError(line, f"not valid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            yield RowError(line, "a line must be a JSON object")
            continue
        yield _row(line, record)


def open_input(path: str) -> IO[str]:
    """A text stream that keeps undecodable bytes as surrogates, for per-row errors."""
    if path == "-":
        return open(
            sys.stdin.fileno(),
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline="",
            closefd=False,
        )
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def read_rows(fh: IO[str], fmt: str = "auto", name: str = "") -> Iterator[BulkRow | RowError]:
    if fmt == "auto":
        if name.endswith((".jsonl", ".ndjson", ".json")):
            fmt = "jsonl"
        elif name.endswith(".csv"):
            fmt = "csv"
        else:
            return _sniff(fh)
    return read_jsonl(fh) if fmt == "jsonl" else read_csv(fh)


def _sniff(fh: IO[str]) -> Iterator[BulkRow | RowError]:
    first = fh.readline()
    rest = _Prepend(first, fh)
    if first.lstrip().startswith("{"):
        yield from read_jsonl(rest)  # type: ignore[arg-type]
    else:
        yield from read_csv(rest)  # type: ignore[arg-type]


class _Prepend:
    """Puts back the line read to sniff the format."""

    def __init__(self, first: str, rest: IO[str]) -> None:
        self._first: str | None = first
        self._rest = rest

    def __iter__(self) -> Iterator[str]:
        if self._first:
            yield self._first
        self._first = None
        yield from self._rest
