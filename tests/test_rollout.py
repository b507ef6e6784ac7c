"""What an operator types to shape a rollout: waves, thresholds, times and delays."""

from __future__ import annotations

import pytest

from worker.coordination.rollout import parse_duration, parse_threshold, parse_waves, parse_when
from worker.core.errors import InputError


@pytest.mark.parametrize(
    ("spec", "total", "ends"),
    [
        ("1%,10%,100%", 1000, [10, 100, 1000]),
        ("50,500,100%", 1000, [50, 500, 1000]),
        ("1%,100%", 10, [1, 10]),  # rounded up, at least one row
        ("1%,2%,100%", 10, [1, 10]),  # 1% and 2% of ten rows both end on row 1
        ("5000,100%", 100, [100]),  # a count past the end is the whole bulk
        ("100%", 7, [7]),
    ],
)
def test_waves_are_cumulative_row_counts(spec: str, total: int, ends: list[int]) -> None:
    assert parse_waves(spec, total) == ends


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("10%,50%", "last wave must be 100%"),
        ("50%,10%,100%", "must not shrink"),
        ("abc,100%", "neither a row count nor a percentage"),
        ("0%,100%", "not a percentage"),
        ("10,,100%", "separated by commas"),
    ],
)
def test_bad_waves_are_named(spec: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_waves(spec, 100)


def test_thresholds_in_rows_and_percent() -> None:
    rows = parse_threshold("5")
    assert not rows.exceeded(5, 100) and rows.exceeded(6, 100)
    share = parse_threshold("5%")
    assert share.text == "5%"
    assert not share.exceeded(1, 20) and share.exceeded(2, 20)
    for bad in ("-1", "x", "100%", "5%%"):
        with pytest.raises(InputError, match="--max-failures"):
            parse_threshold(bad)


def test_durations_and_times() -> None:
    assert parse_duration("20s") == 20
    assert parse_duration("30m") == 1800
    assert parse_duration("2h") == 7200
    assert parse_when("+30m", 1000.0) == 2800.0
    assert parse_when("2026-11-29T22:00:00+03:00", 0) == parse_when("2026-11-29T19:00:00Z", 0)
    with pytest.raises(InputError, match="needs an offset"):
        parse_when("2026-11-29T22:00:00", 0)
    for bad in ("20", "0s", "soon", "-5m"):
        with pytest.raises(InputError, match="not a duration"):
            parse_duration(bad)
