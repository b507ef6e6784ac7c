"""REDIS_URL=sentinel://...: a Redis master found through a Sentinel, by its name."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from simulator import stack

from .conftest import VOICEMAIL, voicemail, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
        code, _, err = voicemail(
            env, "accounts", "import", "-", stdin="account,token\nacct-000001,tok-acct-000001\n"
        )
        assert code == 0, err
        worker_service = stack.start_worker(tmp_path, env, name="sentinel")
        code, status, err = voicemail(
            env, "update", "acct-000001", "--send", "--email", "sentinel@acme.ru",
            "--wait", "--timeout", "30",
        )  # fmt: skip
        assert code == 0, (status, err)
        assert status["state"] == "SUCCESS"
        health = subprocess.run(
            [VOICEMAIL, "health"], env=env, capture_output=True, text=True, timeout=60
        )
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
