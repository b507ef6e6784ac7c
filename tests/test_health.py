from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from simulator import stack

from .conftest import VOICEMAIL


def health(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICEMAIL, "health", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_healthy(worker: stack.Service, simulator: stack.Service) -> None:
    proc = health("--api", "--node", "test@" + os.uname().nodename, PLUSOFON_API_URL=simulator.url)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   redis",
        "ok   redis policy",
        "ok   workers",
        "ok   credential store",
        "ok   api",
    ]
    assert "answered HTTP 401" in lines[4]


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_unhealthy(make_account: Any) -> None:
    make_account()  # the store now remembers which key wrote it
    proc = health("--node", "nobody@nowhere", VOICEMAIL_SECRET_KEY="another-key-" + "x" * 32)
    assert proc.returncode == 1
    assert "FAIL workers: RuntimeError: no worker answered a ping as nobody@nowhere" in proc.stdout
    assert "FAIL credential store" in proc.stdout
    down = health(REDIS_URL="redis://127.0.0.1:1/0")
    assert down.returncode == 1
    assert down.stdout.startswith("FAIL redis: ConnectionError")
    assert len(down.stdout.splitlines()) == 1


def one_account_env() -> dict[str, str]:
    """PLUSOFON_TOKEN set, no VOICEMAIL_SECRET_KEY: how a one-account compose worker runs."""
    env = {k: v for k, v in os.environ.items() if k != "VOICEMAIL_SECRET_KEY"}
    return {**env, "PLUSOFON_TOKEN": "tok-one-account"}


def test_store_check_passes_in_one_account_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.checks import check_store
    from worker.core.settings import load_settings

    monkeypatch.delenv("VOICEMAIL_SECRET_KEY")
    monkeypatch.setenv("PLUSOFON_TOKEN", "tok-one-account")
    check = check_store(load_settings())
    assert check.ok, check.detail
    assert check.detail.startswith("one-account mode: PLUSOFON_TOKEN serves account 'default'")
    monkeypatch.delenv("PLUSOFON_TOKEN")
    neither = check_store(load_settings())
    assert not neither.ok
    assert "VOICEMAIL_SECRET_KEY is not set" in neither.detail


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_healthy_in_one_account_mode() -> None:
    proc = subprocess.run(
        [VOICEMAIL, "health", "--node", "test@" + os.uname().nodename],
        env=one_account_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   credential store: one-account mode" in proc.stdout


def test_health_names_a_worker_running_as_a_reaped_instance(redis_url: str) -> None:
    """Finding 3: a worker whose current instance is marked reaped claims nothing; health
    said nothing of it."""
    import redis

    from cli.checks import reaped_workers
    from worker.core import keys
    from worker.core.settings import load_settings

    client = redis.Redis.from_url(redis_url)
    client.hset(keys.NODES, mapping={"ghost@h": "a" * 16, "alive@h": "b" * 16})
    client.set(keys.reaped("a" * 16), 1, ex=60)
    settings = load_settings()
    assert reaped_workers(settings, ["ghost@h", "alive@h", "unknown@h"]) == {"ghost@h": "a" * 16}
