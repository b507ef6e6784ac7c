"""The bulk record script and status, on a real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis

from worker.coordination import bulk_control
from worker.coordination.bulk_records import (
    FAILED,
    RECORD_SCRIPT,
    SUCCEEDED,
    UNCHANGED,
    Keys,
    Outcome,
    record_args,
)
from worker.coordination.bulk_status import status_from


def meta(client: redis.Redis, keys: Keys) -> dict[str, str]:
    raw: dict[bytes, bytes] = client.hgetall(keys.meta)  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture
def redis_client(quiet_redis: redis.Redis) -> redis.Redis:
    return quiet_redis  # the scripts' shared keys, with no worker's tick racing the test


def test_outcomes_count_once_and_finish_the_bulk(redis_client: redis.Redis) -> None:
    keys = Keys(uuid.uuid4().hex)
    record = redis_client.register_script(RECORD_SCRIPT)
    redis_client.hset(keys.meta, mapping={"created_at": "100.0", "total": 4})
    batch = [
        Outcome(2, SUCCEEDED),
        Outcome(3, UNCHANGED),
        Outcome.failed(4, "UserNotFound: User not found.", account="a", send=True, email="x@y.ru"),
    ]
    assert record(keys=keys.record_keys(), args=record_args(batch, 60, now=101.0)) == [3, 0, 0]
    # A redelivered chunk records the same lines again: nothing changes.
    assert record(keys=keys.record_keys(), args=record_args(batch, 60, now=102.0)) == [0, 0, 0]
    state = meta(redis_client, keys)
    assert (state["succeeded"], state["unchanged"], state["failed"]) == ("1", "1", "1")
    assert "finished_at" not in state
    assert redis_client.llen(keys.failures) == 1

    record(keys=keys.record_keys(), args=record_args([Outcome(5, SUCCEEDED)], 60, now=103.0))
    state = meta(redis_client, keys)
    assert state["finished_at"] == "103.0"
    assert 0 < redis_client.ttl(keys.done) <= 60
    status = status_from("x", state, {}, now=104.0)
    assert (status.state, status.total, status.succeeded, status.pending) == ("DONE", 4, 2, 0)
    assert status.summary()["unchanged"] == 1


def test_status_states() -> None:
    assert status_from("b", {}, {}, 0).state == "UNKNOWN"
    submitting = status_from("b", {"created_at": "1", "rows": "10", "succeeded": "3"}, {}, 5)
    assert (submitting.state, submitting.total, submitting.pending) == ("SUBMITTING", 10, 7)
    running = status_from(
        "b", {"created_at": "1", "total": "10", "succeeded": "4"}, {"8": "20", "9": "30"}, 10.5
    )
    assert running.state == "RUNNING"
    assert running.rate == 10.0  # 50 outcomes over the last 5 full seconds
    dry = status_from("b", {"dry_run": "1", "total": "5", "would_send": "4", "failed": "1"}, {}, 0)
    assert (dry.state, dry.would_send, dry.pending) == ("DRY_RUN", 4, 0)
    assert FAILED == "f"


def test_status_shows_who_and_a_revert_to_come_only_while_one_may() -> None:
    meta = {"created_at": "1", "total": "2", "revert_after": "30", "actor": "bob@ops"}
    running = status_from("b", {**meta, "reason": "ticket 7"}, {}, 2).as_dict()
    assert (running["actor"], running["reason"], running["revert_after"]) == (
        "bob@ops",
        "ticket 7",
        30,
    )
    # Settled without changing anything (no revert_at stamped): no revert will come.
    settled = status_from("b", {**meta, "unchanged": "2", "finished_at": "3"}, {}, 4).as_dict()
    assert settled["state"] == "DONE" and "revert_after" not in settled
    assert "reason" not in settled  # none given


def test_pause_keeps_records_parks_chunks_and_resume_hands_them_back(
    redis_client: redis.Redis,
) -> None:
    bulk_id = uuid.uuid4().hex
    keys = Keys(bulk_id)
    record = redis_client.register_script(RECORD_SCRIPT)
    redis_client.hset(keys.meta, mapping={"created_at": "1", "total": 3, "chunks": 2})
    redis_client.set(keys.chunk(0), "[]", ex=60)
    redis_client.set(keys.chunk(1), "[]", ex=60)
    record(keys=keys.record_keys(), args=record_args([Outcome(2, SUCCEEDED)], 60))

    assert bulk_control.control(redis_client, bulk_id, "pause").changed
    assert not bulk_control.control(redis_client, bulk_id, "pause").changed
    assert [redis_client.ttl(k) for k in (keys.meta, keys.done, keys.chunk(1))] == [-1] * 3
    # Outcomes recorded while paused keep the records from expiring too.
    record(keys=keys.record_keys(), args=record_args([Outcome(3, SUCCEEDED)], 60))
    assert redis_client.ttl(keys.done) == -1
    assert bulk_control.park(redis_client, bulk_id, 1, retries=2)
    status = status_from(bulk_id, meta(redis_client, keys), {}, now=2.0)
    assert (status.state, status.pending) == ("PAUSED", 1)

    change = bulk_control.control(redis_client, bulk_id, "resume")
    assert change.changed and list(change.parked) == [1]
    assert bulk_control.retries_of(change.parked[1]) == 2
    # Handed out, not dropped: the entry stays until the chunk is queued (a sweep's, else).
    assert redis_client.hlen(keys.waking) == 1 and redis_client.hlen(keys.parked) == 0
    # Nothing of an unsettled bulk expires, resumed or not.
    assert [redis_client.ttl(k) for k in (keys.meta, keys.done, keys.chunk(1))] == [-1] * 3
    assert not bulk_control.park(redis_client, bulk_id, 1, retries=2)  # not paused: run it
    assert not bulk_control.control(redis_client, bulk_id, "resume").changed
    assert not bulk_control.control(redis_client, "no-such-bulk", "pause").known


def test_a_revert_reads_the_recorded_accounts_by_line_a_page_at_a_time(
    redis_client: redis.Redis,
) -> None:
    import json

    from tasks.bulk.revert import _rows

    keys = Keys(uuid.uuid4().hex)
    held = {7: ["c", True, "c@old.ru", False, "c@new.ru"], 2: ["a", False, "", True, "a@new.ru"]}
    held |= {line: [f"x{line}", True, "x@old.ru", True, "x@new.ru"] for line in (40, 3, 11)}
    redis_client.hset(keys.before, mapping={k: json.dumps(v) for k, v in held.items()})
    rows = list(_rows(redis_client, keys, page=2))
    assert [r.line for r in rows] == [2, 3, 7, 11, 40]
    first = rows[0]
    assert (first.account, first.send, first.email, first.expect) == (
        "a",
        False,
        "",
        (True, "a@new.ru"),
    )
    redis_client.delete(keys.before)
