"""Waves and the automatic stop without a worker: the segments a bulk is cut into, the
options refused, and the Lua steps (`waves.lua`) on the test Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from redis.typing import EncodableT, FieldT

from worker.coordination.bulk_control import control, wake_orphans
from worker.coordination.bulk_records import RECORD_SCRIPT, SUCCEEDED, Keys, Outcome, record_args
from worker.coordination.bulk_status import read_status
from worker.coordination.waves import Segments, close, hold, options
from worker.core.errors import InputError
from worker.core.keys import NOTIFY_OUTBOX
from worker.queue import notify


@pytest.fixture
def redis_client(quiet_redis: redis.Redis) -> redis.Redis:
    return quiet_redis  # the scripts' shared keys, with no worker's tick racing the test


# -- the plan of segments, without a worker ---------------------------------------------


@pytest.mark.parametrize(
    ("fields", "total", "ends", "waves"),
    [
        ({"waves_spec": "1%,10%,100%"}, 1000, (10, 100, 1000), (1, 2, 3)),
        ({"waves_spec": "50,500,100%"}, 300, (50, 300), (1, 2)),
        # --max-failures: the first min_sample rows are a segment of their own, in wave 1.
        ({"min_sample": 20}, 1000, (20, 1000), (1, 1)),
        ({"waves_spec": "1%,10%,100%", "min_sample": 20}, 1000, (10, 20, 100, 1000), (1, 2, 2, 3)),
        ({"min_sample": 20}, 15, (15,), (1,)),
    ],
)
def test_segments_cut_at_wave_ends_and_the_sample(
    fields: dict[str, Any], total: int, ends: tuple[int, ...], waves: tuple[int, ...]
) -> None:
    segments = Segments.plan(fields, total)
    assert segments is not None
    assert (segments.ends, segments.waves) == (ends, waves)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"waves": "10%,5%"}, "the last wave must be 100%"),
        ({"waves": "1%,x,100%"}, "'x' is neither a row count nor a percentage"),
        ({"wave_pause": True}, "--wave-pause needs --waves"),
        ({"max_failures": "lots"}, "--max-failures 'lots'"),
        ({"max_failures": "5%", "min_sample": 0}, "--min-sample 0"),
        ({"min_sample": 20}, "--min-sample needs --max-failures"),
    ],
)
def test_bad_rollout_options_are_refused_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        options(**kwargs)


# -- the Lua steps, on the test Redis ----------------------------------------------------


def _bulk(client: redis.Redis, total: int, fields: dict[str, Any]) -> Keys:
    keys = Keys(uuid.uuid4().hex)
    mapping: dict[FieldT, EncodableT] = {"created_at": "1.0", "total": total}
    mapping.update(fields)
    client.hset(keys.meta, mapping=mapping)
    return keys


def _record(client: redis.Redis, keys: Keys, outcomes: list[Outcome]) -> list[int]:
    script = client.register_script(RECORD_SCRIPT)
    return [int(x) for x in script(keys=keys.record_keys(), args=record_args(outcomes, 60))]


def test_a_wave_started_is_queued_even_if_its_worker_dies(redis_client: redis.Redis) -> None:
    segments = Segments.plan({"waves_spec": "10,100%"}, 30)
    assert segments is not None
    keys = _bulk(redis_client, 30, dict(segments.fields()))
    sent: list[tuple[str, int, int]] = []
    assert hold(redis_client, keys, 1, 2)  # wave 2's chunk waits
    assert not hold(redis_client, keys, 0, 1)  # wave 1's runs now
    close(redis_client, keys, 1, 10, lambda *chunk: sent.append(chunk))
    assert sent == []  # wave 1 has not settled

    answer = _record(redis_client, keys, [Outcome(line, SUCCEEDED) for line in range(1, 11)])
    assert answer == [10, 0, 0]
    meta = redis_client.hgetall(keys.meta)
    assert (meta[b"seg"], meta[b"wave"]) == (b"2", b"2") and b"wave_ended:1" in meta
    assert redis_client.hlen(keys.held) == 0
    # Whoever recorded it died before queueing the chunk: any worker's tick queues it.
    assert wake_orphans(redis_client, lambda *chunk: sent.append(chunk)) == 1
    assert sent == [(keys.bulk_id, 1, 0)] and redis_client.hlen(keys.waking) == 0


def test_the_threshold_waits_for_the_sample_and_restarts_on_resume(
    redis_client: redis.Redis,
) -> None:
    fields = options(max_failures="10%", min_sample=20)
    keys = _bulk(redis_client, 1000, fields)

    def failed(first: int, count: int) -> list[Outcome]:
        reasons = ("UserNotFound: x", "UserNotFound: y", "RateLimited: z")
        return [Outcome.failed(n, reasons[n % 3]) for n in range(first, first + count)]

    assert _record(redis_client, keys, failed(1, 19))[2] == 0  # 19 < the sample of 20
    assert _record(redis_client, keys, failed(20, 1))[2] == 1  # 20 of 20 failed: stop
    status = read_status(redis_client, keys.bulk_id)
    assert status.state == "PAUSED"
    assert status.paused_reason == (
        "stopped: 20 of 20 settled rows failed, more than --max-failures 10%; "
        "reasons: UserNotFound (13), RateLimited (7)"
    )
    assert control(redis_client, keys.bulk_id, "resume").changed
    # The count starts again: 19 successes and 2 failures are over 10% of 21 only.
    successes = [Outcome(n, SUCCEEDED) for n in range(21, 40)]
    assert _record(redis_client, keys, [*successes, *failed(40, 1)])[2] == 0
    assert _record(redis_client, keys, failed(41, 1))[2] == 0  # 2 of 21: not over 10%
    assert _record(redis_client, keys, failed(42, 1))[2] == 1  # 3 of 22
    assert "3 of 22 settled rows" in str(read_status(redis_client, keys.bulk_id).paused_reason)


def test_a_pause_resumed_before_its_notification_went_out_is_not_sent(
    redis_client: redis.Redis,
) -> None:
    fields = {**options(max_failures="0", min_sample=1), "notify": "billing.event"}
    keys = _bulk(redis_client, 100, fields)
    assert _record(redis_client, keys, [Outcome.failed(1, "UserNotFound: x")])[2] == 1
    assert redis_client.sismember(NOTIFY_OUTBOX, keys.bulk_id)
    control(redis_client, keys.bulk_id, "resume")

    sent: list[Any] = []

    class App:
        def send_task(self, *args: Any, **kwargs: Any) -> None:
            sent.append(args)

    notify.drain(redis_client, App())
    assert sent == [] and not redis_client.sismember(NOTIFY_OUTBOX, keys.bulk_id)
