"""The rows of a bulk as `submit_as` takes them in: `normalize` (rows from the file
readers, or plain mappings from Python callers) and `batched`."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from worker.coordination.bulk_records import BulkRow, RowError
from worker.core.errors import InputError
from worker.core.validation import parse_send


def normalize(rows: Iterable[Any]) -> Iterator[BulkRow | RowError]:
    """Accept BulkRow / RowError from the readers, or plain mappings from Python callers."""
    for number, row in enumerate(rows, start=1):
        if isinstance(row, BulkRow | RowError):
            yield row
        elif isinstance(row, Mapping):
            line = int(row.get("line") or number)
            raw = {k: row.get(k) for k in ("account", "send", "email")}
            try:
                send = parse_send(row.get("send"))
            except InputError as exc:
                yield RowError(line, str(exc), raw)
                continue
            expect = row.get("expect")  # a revert's row, from `bulk_failures` of a revert
            yield BulkRow(
                line,
                row.get("account"),  # type: ignore[arg-type]
                send,
                row.get("email"),  # type: ignore[arg-type]
                expect=(bool(expect[0]), str(expect[1])) if expect else None,
            )
        else:
            yield RowError(number, f"a row must be a mapping, got {type(row).__name__}")


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    # itertools.batched arrived in Python 3.12; we support 3.11.
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
