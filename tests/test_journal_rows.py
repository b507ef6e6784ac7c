"""What the journal is told of a change (worker.coordination.journal_rows), the reason
rule for long bulks (tasks.bulk.who), and the actor and reason checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tasks.bulk import submit_bulk
from tasks.bulk.who import reason_checked, who_fields
from worker.coordination.bulk_records import (
    CANCELLED,
    DRIFTED,
    FAILED,
    INVALID,
    STALE,
    SUCCEEDED,
    UNCHANGED,
    BulkRow,
)
from worker.coordination.journal_entry import Outcome
from worker.coordination.journal_rows import BulkJournal, Who, change_entry, ref_ids
from worker.coordination.ordering import Verdict
from worker.core.errors import InputError
from worker.core.keys import BULKS
from worker.core.settings import get_settings
from worker.core.validation import check_actor, check_reason, default_actor


def test_refs_name_a_job_or_a_bulk_row() -> None:
    assert ref_ids("job:5b0c") == {"job_id": "5b0c"}
    assert ref_ids("bulk:9f2c:14") == {"bulk_id": "9f2c", "line": 14}
    assert ref_ids("correction") == {"job_id": "correction"}


@pytest.mark.parametrize(
    ("code", "reverts", "expected"),
    [
        (SUCCEEDED, False, Outcome.APPLIED),
        (SUCCEEDED, True, Outcome.REVERTED),
        (UNCHANGED, False, Outcome.UNCHANGED),
        (FAILED, False, Outcome.FAILED),
        (STALE, False, Outcome.FAILED),
        (DRIFTED, False, Outcome.FAILED),
        (CANCELLED, False, None),
        (INVALID, False, None),
    ],
)
def test_a_bulk_rows_outcome_in_the_journal(
    code: str, reverts: bool, expected: Outcome | None
) -> None:
    assert BulkJournal("b", reverts=reverts).outcome(code) == expected


def test_a_bulk_row_entry_carries_the_bulks_actor_reason_and_what_it_read() -> None:
    journal = BulkJournal("9f2c", "ops@acme.ru", "move", reverts=False, writes=True)
    row = BulkRow(14, "acme", True, "vm@acme.ru", seq=3)
    journal.note_read(14, False, "old@acme.ru")
    entry = journal.entry(row, SUCCEEDED)
    assert entry is not None
    assert entry.as_dict() | {"time": None} == {
        "time": None,
        "account": "acme",
        "before": {"send": False, "email": "old@acme.ru"},
        "after": {"send": True, "email": "vm@acme.ru"},
        "actor": "ops@acme.ru",
        "reason": "move",
        "job_id": None,
        "bulk_id": "9f2c",
        "line": 14,
        "outcome": "applied",
    }
    journal.note_verdict(14, Verdict.SUPERSEDED)
    superseded = journal.entry(row, UNCHANGED)
    assert superseded is not None and superseded.outcome == Outcome.SUPERSEDED
    assert superseded.before is None  # the read was the first entry's
    assert BulkJournal("v", writes=False).entry(row, SUCCEEDED) is None  # a verify, a plan


def test_a_job_entry_and_a_correction() -> None:
    entry = change_entry("job:5b0c", "acme", (True, "vm@acme.ru"), Outcome.APPLIED, Who("a", ""))
    assert (entry.job_id, entry.bulk_id, entry.before) == ("5b0c", None, None)
    fixed = change_entry(
        "bulk:9f2c:3",
        "acme",
        (True, "v2@acme.ru"),
        Outcome.CORRECTED,
        Who("voicemail", "x"),
        before=(True, "v1@acme.ru"),
    )
    assert (fixed.bulk_id, fixed.line, fixed.before and fixed.before.email) == (
        "9f2c",
        3,
        "v1@acme.ru",
    )


def test_actor_and_reason_are_checked() -> None:
    assert check_actor(None) == "" and check_reason(None) == ""
    assert check_actor("  ops@acme.ru ") == "ops@acme.ru"
    assert "@" in default_actor()
    assert who_fields() == {"actor": default_actor(), "reason": ""}
    with pytest.raises(InputError, match="actor must be a string"):
        check_actor(7)
    with pytest.raises(InputError, match="reason is longer than 1000"):
        check_reason("x" * 1001)
    with pytest.raises(InputError, match="control characters"):
        check_reason("line one\nline two")


def _counted(count: int, seen: list[int]) -> Iterator[int]:
    for i in range(count):
        seen.append(i)
        yield i


def test_a_streamed_bulk_is_held_until_it_is_known_to_need_no_reason() -> None:
    seen: list[int] = []
    with pytest.raises(InputError, match="more than 100 rows needs a reason"):
        reason_checked(_counted(10_000, seen), {}, 100)
    assert len(seen) == 101  # read no further than it had to
    assert list(reason_checked(_counted(100, []), {}, 100)) == list(range(100))
    assert list(reason_checked(_counted(101, []), {"reason": "why"}, 100)) == list(range(101))
    assert list(reason_checked(_counted(101, []), {"plan": 1}, 100)) == list(range(101))
    assert list(reason_checked(_counted(101, []), {}, None)) == list(range(101))


@pytest.fixture
def reason_required(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VOICEMAIL_REASON_REQUIRED_ROWS", "3")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("VOICEMAIL_REASON_REQUIRED_ROWS")
    get_settings.cache_clear()


@pytest.mark.usefixtures("reason_required")
def test_the_producer_api_refuses_a_long_bulk_without_a_reason(
    redis_client: redis.Redis,
) -> None:
    rows = [{"account": f"nobody-{i}", "send": True, "email": "x@acme.ru"} for i in range(4)]
    bulks = redis_client.zcard(BULKS)
    with pytest.raises(InputError, match="VOICEMAIL_REASON_REQUIRED_ROWS"):
        submit_bulk(rows)
    assert redis_client.zcard(BULKS) == bulks  # nothing of it was recorded
    assert submit_bulk(rows[:3], dry_run=True)
    assert submit_bulk(rows, dry_run=True, reason="all four")
