"""What survives what: real Redis, real worker processes killed with SIGKILL, the simulator.

Each test gets its own Redis server (AOF on, as docker-compose runs it), simulator
and workers (the `isolated` fixture in conftest.py), and talks to them through the
`voicemail` CLI, as another host would.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from simulator import stack

from .conftest import VISIBILITY, Isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_single_job_survives_sigkill_of_the_worker(isolated: Isolated) -> None:
    isolated.import_accounts(3)
    isolated.sim.script("acct-000001", ["slow:1.5"])
    first = isolated.worker("k1")
    job = isolated.cli_json("update", "acct-000001", "--send", "--email", "kill@acme.ru")["id"]
    stack.wait_until(lambda: isolated.sim.requests("acct-000001") == 1, 20, "the request in flight")

    first.kill()  # SIGKILL to the main process and its pool at once
    killed_at = time.monotonic()
    isolated.worker("k2")
    status = isolated.cli_json("result", job, "--wait", "--timeout", "60")
    recovery = time.monotonic() - killed_at
    assert status["state"] == "SUCCESS", status
    assert isolated.sim.account("acct-000001")["email"] == "kill@acme.ru"
    # The message came back after the lease ran out, not after kombu's default hour.
    assert recovery < VISIBILITY + 5 + 10, recovery
    print(f"single job recovered {recovery:.1f}s after SIGKILL")


def test_bulk_survives_sigkill_mid_way(isolated: Isolated) -> None:
    names = isolated.import_accounts(1500)
    isolated.env["VOICEMAIL_BULK_CHUNK_SIZE"] = "100"
    # 300 requests/s for everyone: slow enough to kill the worker mid-bulk.
    first = isolated.worker("b1", VOICEMAIL_RATE_LIMIT="300")
    rows = "account,send,email\n" + "".join(f"{n},true,{n}@after-kill.example.com\n" for n in names)
    bulk_id = isolated.cli_json("bulk", "submit", "-", input=rows)["bulk_id"]

    def progress() -> int:
        return int(isolated.cli_json("bulk", "status", bulk_id)["succeeded"])

    stack.wait_until(lambda: progress() >= 300, 60, "a fifth of the bulk")
    first.kill()
    killed_at = time.monotonic()
    done_before = progress()
    assert done_before < len(names)

    isolated.worker("b2", VOICEMAIL_RATE_LIMIT="300")
    stack.wait_until(
        lambda: isolated.cli_json("bulk", "status", bulk_id)["state"] == "DONE", 120, "bulk DONE"
    )
    status = isolated.cli_json("bulk", "status", bulk_id)
    assert (status["succeeded"], status["failed"], status["pending"]) == (1500, 0, 0)
    stats = isolated.sim.stats()
    patched = stats["patches"]
    assert all(patched.get(n, 0) >= 1 for n in names)
    duplicates = sum(patched.values()) - len(names)
    print(
        f"bulk: {done_before} rows done at SIGKILL, DONE "
        f"{time.monotonic() - killed_at:.1f}s later, {duplicates} duplicate PATCHes"
    )
    # Only rows in flight at the kill can be sent twice.
    assert duplicates <= 2 * 100


def test_redis_restart(isolated: Isolated) -> None:
    isolated.import_accounts(20)
    isolated.worker("r1")
    before = isolated.cli_json(
        "update", "acct-000001", "--send", "--email", "pre@acme.ru", "--wait"
    )
    assert before["state"] == "SUCCESS"

    # Jobs accepted before the restart and still waiting: countdowns the worker holds.
    from celery import Celery

    other = Celery("other", broker=isolated.redis.url, backend=isolated.redis.url)
    other.conf.update(task_serializer="json", accept_content=["json"])
    held = [
        other.send_task(
            "voicemail.update", args=[f"acct-{i:06d}", True, f"held{i}@acme.ru"], countdown=4
        )
        for i in range(2, 7)
    ]

    port, data_dir = isolated.redis.extra["port"], isolated.redis.extra["dir"]
    isolated.redis.stop()  # SIGTERM: Redis writes its AOF and exits
    down = isolated.cli("get", "acct-000001")
    assert down.returncode == 4
    assert "cannot reach Redis" in down.stderr

    argv = [
        stack.redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--dir",
        str(data_dir),
        "--save",
        "",
    ]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    isolated.redis = stack.Service("redis", process, isolated.redis.url)
    stack.wait_until(lambda: stack.redis_answers(isolated.redis.url), 20, "Redis back")

    # Results from before the restart are still there (AOF).
    assert isolated.cli_json("result", before["id"])["state"] == "SUCCESS"
    # The running worker reconnected by itself.
    after = isolated.cli_json(
        "update", "acct-000010", "--no-send", "--email", "post@acme.ru", "--wait", "--timeout", "60"
    )
    assert after["state"] == "SUCCESS", after
    # Nothing accepted before the restart was lost.
    for result in held:
        assert result.get(timeout=60)["send"] is True
    for i in range(2, 7):
        assert isolated.sim.account(f"acct-{i:06d}")["email"] == f"held{i}@acme.ru"
    other.close()


def test_job_lost_between_broker_and_worker_is_published_again(isolated: Isolated) -> None:
    """kombu takes a message off the queue before recording it as unacknowledged; a worker
    killed between the two loses it. Simulate exactly that: the message vanishes."""
    import redis

    isolated.import_accounts(2)
    client = redis.Redis.from_url(isolated.redis.url)
    lost = isolated.cli_json("update", "acct-000001", "--send", "--email", "lost@acme.ru")["id"]
    assert client.rpop("celery") is not None  # taken off the queue by a worker that then died
    later = isolated.cli_json("update", "acct-000002", "--send", "--email", "later@acme.ru")["id"]
    isolated.worker("l1")
    assert isolated.cli_json("result", later, "--wait", "--timeout", "30")["state"] == "SUCCESS"
    status = isolated.cli_json("result", lost, "--wait", "--timeout", "60")
    assert status["state"] == "SUCCESS", status
    assert isolated.sim.account("acct-000001")["email"] == "lost@acme.ru"
    client.close()
