"""A host service plugs the producer in and keeps what it had (issue 20, "Done when").

The host is a project of its own in a temporary directory: its own Celery app in its own
`tasks.py`. Our wheel goes into a fresh venv with the dependencies a producer's install
resolves (no `worker` extra); the host enqueues through `voicemail_worker.producer`
against a real worker, and its current app, kombu's classes and `sys.modules` are as they
were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from uv import find_uv_bin

from simulator import stack

from .conftest import SimAccount

ROOT = Path(__file__).resolve().parent.parent

HOST_TASKS = """
import os
from celery import Celery

app = Celery("host", broker=os.environ["HOST_BROKER"], backend=os.environ["HOST_BROKER"])


@app.task(name="host.add")
def add(a, b):
    return a + b
"""

HOST_SERVICE = """
import json, os, sys

import tasks  # the host's own module, not ours
from celery import current_app
from kombu.transport import redis as kombu_redis


def snapshot():
    return (current_app._get_current_object(), kombu_redis.Channel._create_client,
            kombu_redis.QoS.restore_unacked, kombu_redis.QoS.ack)


before = snapshot()
from voicemail_worker.producer import (
    AccountNotFound, InputError, JobStatus, Producer, QueueUnavailable, enqueue_update, wait,
)
from voicemail_worker.bulk import bulk_status, submit_bulk

account = sys.argv[1]
status = wait(enqueue_update(account, True, "host@example.com"), timeout=30)
with Producer(os.environ["REDIS_URL"]) as producer:
    second = producer.wait(producer.enqueue_get(account), timeout=30)
    try:
        producer.enqueue_get("no-such-account-here")
        missing = None
    except AccountNotFound as exc:
        missing = type(exc).__name__
print(json.dumps({
    "host_tasks": tasks.__file__,
    "host_task": tasks.add.name,
    "states": [status.state, second.state],
    "result": second.result,
    "missing": missing,
    "unchanged": [a is b for a, b in zip(before, snapshot())],
    "current_is_host": current_app._get_current_object() is tasks.app,
    "heavy": sorted(m for m in sys.modules
                    if m.split(".")[0] in ("aiohttp", "uvloop", "flower", "prometheus_client")),
}))
"""


def _run(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def producer_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding our wheel and what a producer's install resolves to."""
    uv = find_uv_bin()
    out = tmp_path_factory.mktemp("producer-venv")
    wheels = out / "dist"
    _run(uv, "build", "-q", "--wheel", "--no-build-isolation", "--python", sys.executable,
         "-o", str(wheels), str(ROOT))  # fmt: skip
    (wheel,) = wheels.glob("voicemail_worker-*.whl")
    env_dir = out / "venv"
    _run(uv, "venv", "-q", "--python", sys.executable, str(env_dir))
    _run(uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), str(wheel))
    return env_dir


@pytest.mark.integration
@pytest.mark.slow
def test_a_host_with_its_own_tasks_module_and_app_keeps_them(
    producer_venv: Path,
    tmp_path: Path,
    worker: stack.Service,
    make_account: Callable[..., SimAccount],
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "tasks.py").write_text(HOST_TASKS)
    (host / "service.py").write_text(HOST_SERVICE)
    account = make_account()
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "HOST_BROKER": os.environ["REDIS_URL"],
        "VOICEMAIL_SECRET_KEY": os.environ["VOICEMAIL_SECRET_KEY"],
    }
    done = subprocess.run(
        [str(producer_venv / "bin" / "python"), "service.py", account.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=host,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["host_tasks"] == str(host / "tasks.py")
    assert report["host_task"] == "host.add"
    assert report["states"] == ["SUCCESS", "SUCCESS"]
    assert report["result"]["account"] == account.name
    assert report["missing"] == "AccountNotFound"
    assert report["unchanged"] == [True, True, True, True]
    assert report["current_is_host"] is True
    assert report["heavy"] == []
    installed = subprocess.run(
        [find_uv_bin(), "pip", "list", "--python", str(producer_venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for worker_only in ("aiohttp", "uvloop", "flower", "prometheus-client"):
        assert f"\n{worker_only} " not in installed, f"{worker_only} came with a producer"
