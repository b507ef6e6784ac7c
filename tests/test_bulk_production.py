"""Issue 18, "no silent loss in production conditions": a slow bulk outlives the result
expiry, a lost chunk fails its rows by name, a resume interrupted before its re-queue
loses nothing, and the caps and the notify allow-list hold. Real worker processes, a
Redis and a simulator of their own, driven through the `voicemail` executable."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import redis

from simulator import stack
from worker.coordination.bulk_records import NOTIFY_OUTBOX, Keys
from worker.core.keys import WAKING
from worker.core.settings import load_settings
from worker.queue import notify

from . import test_bulk_safety
from .conftest import VOICEMAIL, Isolated, voicemail
from .own_stack import OwnStack, name, rows_csv

pytestmark = [pytest.mark.integration]
setup = test_bulk_safety.setup  # the fixture: a worker, a Redis, a simulator of its own


def test_a_chunk_whose_rows_are_gone_fails_them_by_line(setup: OwnStack) -> None:
    # Queued with no worker up, so every chunk waits in the queue.
    setup.worker.stop()
    _, submitted, _ = setup.cli("bulk", "submit", "-", stdin=rows_csv(1, 200))
    bulk_id = str(submitted["bulk_id"])
    keys = Keys(bulk_id)
    assert setup.redis.ttl(keys.chunk(1)) == -1  # nothing of a queued bulk expires
    setup.redis.delete(keys.chunk(1))  # chunk 1: file lines 52..101
    setup.start_worker("lost")

    final = setup.wait_settled(bulk_id)
    assert (final["state"], final["succeeded"], final["failed"]) == ("DONE", 150, 50)
    listed = subprocess.run(
        [VOICEMAIL, "bulk", "failures", bulk_id], env=setup.env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and listed.stdout.count("ChunkLost: chunk 1") == 50
    failures = [json.loads(x) for x in setup.redis.lrange(keys.failures, 0, -1)]
    assert sorted(f["line"] for f in failures) == list(range(52, 102))
    assert all(f["reason"].startswith("ChunkLost: chunk 1 of bulk") for f in failures)
    # Settled: now, and only now, its keys expire.
    assert setup.redis.ttl(keys.meta) > 0 and not setup.redis.exists(keys.lines)
    log = setup.worker.log_path.read_text() if setup.worker.log_path else ""
    assert "its rows were gone; 50 lines failed" in log


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_slow_bulk_outlives_the_result_expiry(isolated: Isolated) -> None:
    """1,500 rows at 10 requests/s take about 150 s, far past VOICEMAIL_RESULT_EXPIRES=60
    (its lowest value); chunks of 100 and 8 pool threads leave chunks queued for over a
    minute. Every row is applied."""
    names = isolated.import_accounts(1500)
    isolated.env.update(
        VOICEMAIL_RATE_LIMIT="10", VOICEMAIL_RESULT_EXPIRES="60", VOICEMAIL_BULK_CHUNK_SIZE="100"
    )
    isolated.worker("slow")
    rows = "account,send,email\n" + "".join(f"{n},true,{n}@slow.ru\n" for n in names)
    started = time.monotonic()
    proc = isolated.cli(
        "bulk", "submit", "-", "--wait", "--timeout", "400", input=rows, timeout=450
    )
    took = time.monotonic() - started
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"1500 rows at 10/s settled in {took:.0f}s with VOICEMAIL_RESULT_EXPIRES=60: {summary}")
    assert proc.returncode == 0, proc.stderr
    assert (summary["state"], summary["succeeded"], summary["failed"]) == ("DONE", 1500, 0)
    assert summary["pending"] == 0 and took > 120
    client = redis.Redis.from_url(isolated.env["REDIS_URL"])
    assert 0 < client.ttl(Keys(summary["bulk_id"]).meta) <= 60  # settled: expires now
    client.close()
    for n in names[::50]:  # a sample: each account holds the bulk's values
        assert isolated.sim.account(n)["email"] == f"{n}@slow.ru"


_INTERRUPTED_RESUME = """
import sys
import tasks.bulk.lifecycle as lifecycle

def interrupted(*args, **kwargs):
    raise KeyboardInterrupt  # Ctrl-C after the control step, before any chunk is queued

lifecycle._send = interrupted
lifecycle.resume_bulk(sys.argv[1])
"""


def test_a_resume_interrupted_before_its_requeue_loses_no_chunk(setup: OwnStack) -> None:
    _, submitted, _ = setup.cli("bulk", "submit", "-", stdin=rows_csv(1, 200))
    bulk_id = str(submitted["bulk_id"])
    keys = Keys(bulk_id)
    stack.wait_until(lambda: setup.patches() >= 30, 30, "30 rows PATCHed")
    setup.cli("bulk", "pause", bulk_id)
    stack.wait_until(lambda: setup.redis.hlen(keys.parked) > 0, 30, "chunks parked")
    time.sleep(1.5)  # the chunks in flight park too

    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_RESUME, bulk_id],
        env=setup.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr
    # No longer paused, nothing queued by the resumer: the chunks are still on record.
    assert setup.status(bulk_id)["state"] == "RUNNING"
    # A worker's sweep queues them once the resumer's lease lapses, with no command.
    final = setup.wait_settled(bulk_id, timeout=60)
    assert (final["state"], final["succeeded"], final["failed"]) == ("DONE", 200, 0)
    applied = [len(setup.sim.account(name(i))["applied"]) for i in range(1, 201)]
    assert applied == [1] * 200  # sent once, though a chunk may be queued twice
    stack.wait_until(lambda: not setup.redis.sismember(WAKING, bulk_id), 10, "sweep done")
    assert setup.redis.exists(keys.waking) == 0


def test_a_bulk_over_the_row_cap_is_refused_and_cancelled(setup: OwnStack) -> None:
    env = {**setup.env, "VOICEMAIL_BULK_MAX_ROWS": "120"}
    code, _, err = voicemail(env, "bulk", "submit", "-", stdin=rows_csv(1, 200))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "VOICEMAIL_BULK_MAX_ROWS" in err and "more than 120 rows" in err
    bulk_id = err.split("bulk ", 1)[1].split()[0]
    final = setup.wait_settled(bulk_id)
    assert final["state"] == "CANCELLED" and final["total"] <= 120
    counted = final["succeeded"] + final["failed"] + final["cancelled"] + final["unchanged"]
    assert counted == final["total"]
    # At the cap exactly, a bulk runs.
    code, out, err = voicemail(env, "bulk", "submit", "-", "--wait", stdin=rows_csv(1, 120))
    assert code == 0 and out["state"] == "DONE" and out["succeeded"] == 120, err


def test_notify_allow_list_is_checked_at_submit(setup: OwnStack) -> None:
    env = {**setup.env, "VOICEMAIL_NOTIFY_TASKS": "billing.*", "VOICEMAIL_NOTIFY_QUEUES": "bill*"}
    rows = rows_csv(1, 3)
    for options, setting in (
        (["--notify", "evil.task", "--notify-queue", "billing"], "VOICEMAIL_NOTIFY_TASKS"),
        (["--notify", "billing.done", "--notify-queue", "celery"], "VOICEMAIL_NOTIFY_QUEUES"),
        (["--notify", "billing.done"], "VOICEMAIL_NOTIFY_QUEUES"),  # the default queue
    ):
        code, _, err = voicemail(env, "bulk", "submit", "-", *options, stdin=rows)
        assert code == 2 and len(err.strip().splitlines()) == 1 and setting in err, err
    code, out, err = voicemail(
        env,
        "bulk",
        "submit",
        "-",
        "--notify",
        "billing.done",
        "--notify-queue",
        "billing",
        stdin=rows,
    )
    assert code == 0 and out.get("bulk_id"), err


class _App:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append((name, options))


def test_a_worker_drops_a_notification_the_allow_list_refuses(
    quiet_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client = quiet_redis  # the outbox, with no worker's tick draining it first
    allowed, refused = uuid.uuid4().hex, uuid.uuid4().hex
    for bulk_id, task in ((allowed, "billing.done"), (refused, "evil.task")):
        # Settled (the outbox holds settled bulks, and ones that paused themselves).
        meta = {"created_at": "1", "total": "0", "finished_at": "2"}
        meta.update(notify=task, notify_queue="billing")
        redis_client.hset(Keys(bulk_id).meta, mapping=meta)  # type: ignore[arg-type]
        redis_client.sadd(NOTIFY_OUTBOX, bulk_id)
    settings = load_settings(VOICEMAIL_NOTIFY_TASKS="billing.*", VOICEMAIL_NOTIFY_QUEUES="*")
    app = _App()
    with caplog.at_level(logging.ERROR, logger=notify.__name__):
        assert notify.drain(redis_client, app, settings) == 1
    assert [name for name, _ in app.sent] == ["billing.done"]
    assert not redis_client.sismember(NOTIFY_OUTBOX, refused)  # dropped, not retried
    assert any("VOICEMAIL_NOTIFY_TASKS" in r.getMessage() for r in caplog.records)
