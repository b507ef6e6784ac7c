"""The Procfile's `flower:` line refuses an empty FLOWER_BASIC_AUTH and starts without it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from simulator import stack
from worker import flower_guard

BIN = Path(sys.executable).parent


def procfile_flower(port: int) -> list[str]:
    """The `flower:` line as honcho runs it, with `$PORT` given."""
    line = next(
        x for x in (stack.ROOT / "Procfile").read_text().splitlines() if x.startswith("flower:")
    )
    command = line.removeprefix("flower:").replace("${PORT:-5555}", str(port))
    argv = shlex.split(command)
    assert argv[:4] == ["celery", "-A", "worker", "flower"]
    return [str(BIN / argv[0]), *argv[1:]]


def flower_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    return {**env, **extra}


@pytest.mark.parametrize("value", ["", " ", ","])
def test_empty_basic_auth_is_refused(value: str) -> None:
    proc = subprocess.run(
        procfile_flower(stack.free_port()),
        cwd=stack.ROOT,
        env=flower_env(FLOWER_BASIC_AUTH=value),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "FLOWER_BASIC_AUTH" in lines[0]


@pytest.mark.integration
def test_flower_starts_without_basic_auth(tmp_path: Path) -> None:
    port = stack.free_port()
    log = (tmp_path / "flower.log").open("wb")
    flower = subprocess.Popen(
        procfile_flower(port),
        cwd=stack.ROOT,
        env=flower_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def answers() -> bool:
            if flower.poll() is not None:
                raise RuntimeError((tmp_path / "flower.log").read_text()[-2000:])
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthcheck").status_code == 200
            except httpx.TransportError:
                return False

        stack.wait_until(answers, 60, "Flower answering", step=0.2)
    finally:
        flower.send_signal(signal.SIGTERM)
        try:
            flower.wait(30)
        finally:
            if flower.poll() is None:
                os.killpg(flower.pid, signal.SIGKILL)
            log.close()


def test_guard_only_acts_for_flower() -> None:
    """Outside `celery ... flower` (a worker, a test) the variable is not the guard's business."""
    assert not flower_guard.running_flower()
    flower_guard.check({"FLOWER_BASIC_AUTH": ""})  # no click context: no exit
    assert flower_guard.empty_basic_auth({"FLOWER_BASIC_AUTH": ""})
    assert not flower_guard.empty_basic_auth({"FLOWER_BASIC_AUTH": "a:b"})
    assert not flower_guard.empty_basic_auth({})
