from __future__ import annotations

import io

import pytest

from cli.row_files import read_rows
from worker.coordination.bulk_records import BulkRow, RowError
from worker.core.errors import InputError


def rows(text: str, fmt: str = "auto", name: str = "") -> list[BulkRow | RowError]:
    return list(read_rows(io.StringIO(text, newline=""), fmt, name))


def test_csv_rows_with_line_numbers() -> None:
    got = rows("account,send,email\nacme,true,a@b.ru\n\nbeta,FALSE,b@b.ru\n", name="x.csv")
    assert got == [BulkRow(2, "acme", True, "a@b.ru"), BulkRow(4, "beta", False, "b@b.ru")]


def test_csv_columns_in_any_order_and_extra_columns() -> None:
    got = rows("email,line,account,send,reason\na@b.ru,7,acme,true,old\n", name="x.csv")
    assert got == [BulkRow(2, "acme", True, "a@b.ru")]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("acme,yes,a@b.ru", "send must be true or false"),
        ("acme,1,a@b.ru", "send must be true or false"),
        ("acme,true", "missing column email"),
        ("acme,true," + "x" * (2 << 20), "unreadable CSV"),
    ],
)
def test_bad_csv_rows(line: str, reason: str) -> None:
    got = rows(f"account,send,email\n{line}\nok,true,a@b.ru\n", name="x.csv")
    assert isinstance(got[0], RowError)
    assert reason in got[0].reason
    assert got[0].line == 2
    assert got[-1] == BulkRow(3, "ok", True, "a@b.ru")


def test_missing_header_column_refuses_the_file() -> None:
    with pytest.raises(InputError, match="missing email"):
        rows("account,send\nacme,true\n", name="x.csv")


def test_jsonl() -> None:
    text = (
        '{"account": "acme", "send": true, "email": "a@b.ru"}\n'
        "not json\n"
        '{"account": "b", "send": "nope", "email": "b@b.ru"}\n'
        "[1, 2]\n"
        '{"account": "c", "email": "c@b.ru"}\n'
    )
    got = rows(text, name="x.jsonl")
    assert got[0] == BulkRow(1, "acme", True, "a@b.ru")
    assert [r.line for r in got[1:]] == [2, 3, 4, 5]
    assert all(isinstance(r, RowError) for r in got[1:])


def test_format_is_sniffed_from_the_first_line() -> None:
    assert rows('{"account": "a", "send": false, "email": "a@b.ru"}\n') == [
        BulkRow(1, "a", False, "a@b.ru")
    ]
    assert rows("account,send,email\na,false,a@b.ru\n") == [BulkRow(2, "a", False, "a@b.ru")]


def test_bytes_that_are_not_utf8_make_a_bad_row(tmp_path: object) -> None:
    from pathlib import Path

    from cli.row_files import open_input

    path = Path(str(tmp_path)) / "bad.csv"
    path.write_bytes(b"account,send,email\nac\xffme,true,a@b.ru\nok,true,a@b.ru\n")
    with open_input(str(path)) as fh:
        got = list(read_rows(fh, "csv"))
    assert isinstance(got[0], RowError)
    assert "UTF-8" in got[0].reason
    assert got[1] == BulkRow(3, "ok", True, "a@b.ru")
