"""What survives what: real Redis, real worker processes killed with SIGKILL, the simulator.

Each test gets its own Redis server (AOF on, as docker-compose runs it), simulator
and workers, and talks to them through the `voicemail` CLI, as another host would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulator import stack

from .conftest import worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VOICEMAIL = str(Path(sys.executable).parent / "voicemail")
VISIBILITY = 4


@dataclass
class Isolated:
    log_dir: Path
    redis: stack.Service
    simulator: stack.Service
    sim: stack.SimulatorControl
    env: dict[str, str]
    workers: list[stack.Service] = field(default_factory=list)

    def worker(self, name: str, **extra: str) -> stack.Service:
        service = stack.start_worker(self.log_dir, {**self.env, **extra}, name=name, concurrency=8)
        self.workers.append(service)
        return service

    def cli(self, *args: str, input: str | None = None, timeout: float = 120) -> Any:
        return subprocess.run(
            [VOICEMAIL, *args],
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str, input: str | None = None) -> dict[str, Any]:
        proc = self.cli(*args, input=input)
        assert proc.stdout, proc.stderr
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))

    def import_accounts(self, count: int) -> list[str]:
        names = [f"acct-{i:06d}" for i in range(1, count + 1)]
        csv = "account,token\n" + "".join(f"{n},tok-{n}\n" for n in names)
        proc = self.cli("accounts", "import", "-", input=csv)
        assert proc.returncode == 0, proc.stderr
        return names


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Isolated]:
    redis_service = stack.start_redis(tmp_path, appendonly=True)
    sim_service = stack.start_simulator(tmp_path, generate=3000)
    env = worker_env(
        sim_service.url,
        REDIS_URL=redis_service.url,
        VOICEMAIL_VISIBILITY_TIMEOUT=str(VISIBILITY),
    )
    env.pop("VOICEMAIL_REQUEUE_MAX", None)
    iso = Isolated(
        tmp_path, redis_service, sim_service, stack.SimulatorControl(sim_service.url), env
    )
    try:
        yield iso
    finally:
        for service in iso.workers:
            service.stop()
        iso.sim.close()
        sim_service.stop()
        iso.redis.stop()  # the restarted one, if the test restarted it


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
    assert down.returncode == 2
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


def test_json_logs_carry_job_fields_and_no_token(isolated: Isolated) -> None:
    isolated.import_accounts(2)
    isolated.sim.script("acct-000002", ["missing-200"])
    worker = isolated.worker("j1", VOICEMAIL_LOG_JSON="true")
    ok = isolated.cli_json("update", "acct-000001", "--send", "--email", "j@acme.ru", "--wait")
    failed = isolated.cli_json("get", "acct-000002", "--wait")
    assert (ok["state"], failed["state"]) == ("SUCCESS", "FAILURE")

    def job_lines() -> dict[str, dict[str, Any]]:
        found = {}
        for line in worker.log().splitlines():
            if line.startswith("{"):
                record = json.loads(line)  # every line of ours is one JSON object
                if "outcome" in record:
                    found[record["job_id"]] = record
        return found

    stack.wait_until(lambda: {ok["id"], failed["id"]} <= set(job_lines()), 10, "the log lines")
    lines = job_lines()
    assert lines[ok["id"]]["outcome"] == "ok"
    assert lines[ok["id"]]["account"] == "acct-000001"
    assert lines[ok["id"]]["attempt"] == 1
    assert isinstance(lines[ok["id"]]["latency_ms"], float)
    assert lines[failed["id"]]["outcome"] == "failed"
    assert "UserNotFound" in lines[failed["id"]]["message"]
    assert "tok-acct-" not in worker.log()


def test_redis_sentinel_urls(tmp_path: Path) -> None:
    """REDIS_URL=sentinel://...: workers, producers and the store find the master by name."""
    master = stack.start_redis(tmp_path)
    port = stack.free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor cluster1 127.0.0.1 {master.extra['port']} 1\n"
    )
    sentinel = subprocess.Popen(
        [stack.redis_server_binary(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sentinel_service = stack.Service("sentinel", sentinel)
    sim_service = stack.start_simulator(tmp_path, generate=3)
    env = worker_env(
        sim_service.url,
        REDIS_URL=f"sentinel://127.0.0.1:{port}/0",
        VOICEMAIL_SENTINEL_MASTER="cluster1",
    )
    worker_service = None
    try:
        stack.wait_until(lambda: stack.redis_answers(f"redis://127.0.0.1:{port}"), 20, "sentinel")
        run: dict[str, Any] = {
            "env": env,
            "capture_output": True,
            "text": True,
            "timeout": 60,
            "check": False,
        }
        imported = subprocess.run(
            [VOICEMAIL, "accounts", "import", "-"],
            input="account,token\nacct-000001,tok-acct-000001\n",
            **run,
        )
        assert imported.returncode == 0, imported.stderr
        worker_service = stack.start_worker(tmp_path, env, name="sentinel")
        proc = subprocess.run(
            [
                VOICEMAIL,
                "update",
                "acct-000001",
                "--send",
                "--email",
                "sentinel@acme.ru",
                "--wait",
                "--timeout",
                "30",
            ],
            **run,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["state"] == "SUCCESS"
        health = subprocess.run([VOICEMAIL, "health"], **run)
        assert health.returncode == 0, health.stdout
        # The data went to the master the sentinel named.
        import redis

        assert redis.Redis.from_url(master.url).hexists("voicemail:accounts", "acct-000001")
    finally:
        if worker_service is not None:
            worker_service.stop()
        sim_service.stop()
        sentinel_service.stop()
        master.stop()


def test_two_workers_share_one_bulk(isolated: Isolated) -> None:
    names = isolated.import_accounts(1000)
    isolated.env["VOICEMAIL_BULK_CHUNK_SIZE"] = "50"
    workers = [isolated.worker(f"node{i}") for i in (1, 2)]
    rows = "account,send,email\n" + "".join(f"{n},true,{n}@scale.example.com\n" for n in names)
    summary = isolated.cli_json("bulk", "submit", "-", "--wait", "--timeout", "60", input=rows)
    assert (summary["state"], summary["succeeded"]) == ("DONE", 1000)
    chunks = [w.log().count(" chunk ") for w in workers]
    print(f"chunks taken per worker: {chunks}")
    assert all(count > 0 for count in chunks), chunks
