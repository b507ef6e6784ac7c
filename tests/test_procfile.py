"""The Procfile as operators run it: `honcho start`, a job, Flower sees it, the metrics
exporter answers, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from simulator import stack

from .conftest import VOICEMAIL, voicemail, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


def test_honcho_runs_the_procfile(tmp_path: Path) -> None:
    redis_service = stack.start_redis(tmp_path)
    sim_service = stack.start_simulator(tmp_path, generate=5)
    # honcho gives each process type its own $PORT: base, base + 100, ... in Procfile
    # order, so `flower:` (second) listens on base + 100 and `metrics:` (third) on base + 200.
    port = stack.free_port()
    while not 1200 <= port < 65000:
        port = stack.free_port()
    metrics_url = f"http://127.0.0.1:{port + 100}/metrics"
    env = {
        **worker_env(sim_service.url, REDIS_URL=redis_service.url),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "FLOWER_BASIC_AUTH": "ops:procfile-pass",
        "VOICEMAIL_METRICS_BASIC_AUTH": "prom:procfile-pass",
    }
    log = (tmp_path / "honcho.log").open("wb")
    honcho = subprocess.Popen(
        [str(BIN / "honcho"), "start", "--port", str(port - 100)],
        cwd=stack.ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        code, _, err = voicemail(
            env, "accounts", "import", "-", stdin="account,token\nacct-000001,tok-acct-000001\n"
        )
        assert code == 0, err
        auth = ("ops", "procfile-pass")
        url = f"http://127.0.0.1:{port}"
        stack.wait_until(lambda: httpx.get(url + "/healthcheck").status_code == 200, 60, "Flower")
        stack.wait_until(
            lambda: httpx.get(metrics_url).status_code == 401, 60, "the metrics exporter"
        )
        scrape = httpx.get(metrics_url, auth=("prom", "procfile-pass"))
        assert scrape.status_code == 200
        assert 'voicemail_queue_depth{queue="celery"}' in scrape.text
        stack.wait_until(
            lambda: (
                subprocess.run(
                    [VOICEMAIL, "health"], env=env, capture_output=True, timeout=30
                ).returncode
                == 0
            ),
            60,
            "the Procfile worker answering",
        )
        code, job, err = voicemail(
            env, "update", "acct-000001", "--send", "--email", "pf@acme.ru",
            "--wait", "--timeout", "30",
        )  # fmt: skip
        assert code == 0, (job, err)
        job_id = job["id"]
        stack.wait_until(
            lambda: (
                httpx.get(f"{url}/api/task/info/{job_id}", auth=auth).json().get("state")
                == "SUCCESS"
            ),
            30,
            "Flower showing the finished job",
        )
    finally:
        honcho.send_signal(signal.SIGTERM)
        try:
            code = honcho.wait(60)
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
            log.close()
            sim_service.stop()
            redis_service.stop()
    output = (tmp_path / "honcho.log").read_text()
    assert "worker.1" in output and "flower.1" in output and "metrics.1" in output
    # Every process stopped: nothing of ours still listens on Flower's or the exporter's port.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1)
    with pytest.raises(httpx.ConnectError):
        httpx.get(metrics_url, timeout=1)
    assert code in (0, 130, -15, 143), output[-2000:]
