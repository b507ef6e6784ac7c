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
        "ok   workers",
        "ok   credential store",
        "ok   api",
    ]
    assert "answered HTTP 401" in lines[3]


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
