"""A Redis that may evict the fences stops the worker and fails `voicemail health`;
one that persists nothing makes both warn (issue 18, finding 2)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator import stack
from worker.core.redis_server import check_server

from .conftest import VOICEMAIL, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def evicting(log_dir: Path) -> Iterator[stack.Service]:
    service = stack.start_redis(log_dir, extra=["--maxmemory-policy", "volatile-lru"])
    yield service
    service.stop()


def test_the_verdict_names_the_policy_and_the_fix(evicting: stack.Service) -> None:
    fitness = check_server(redis.Redis.from_url(evicting.url))
    assert fitness.problem is not None
    assert "volatile-lru" in fitness.problem and "noeviction" in fitness.problem
    assert any("neither AOF nor RDB" in w for w in fitness.warnings)


def test_the_worker_refuses_to_start_on_an_evicting_redis(
    evicting: stack.Service, simulator: stack.Service
) -> None:
    env = worker_env(simulator.url, REDIS_URL=evicting.url)
    done = subprocess.run(
        stack.procfile_worker_argv("evict"), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "maxmemory-policy" in line]
    assert said and "volatile-lru" in said[-1] and "noeviction" in said[-1]


def test_allow_eviction_starts_it_with_a_warning(
    evicting: stack.Service, simulator: stack.Service, log_dir: Path
) -> None:
    env = worker_env(simulator.url, REDIS_URL=evicting.url, VOICEMAIL_ALLOW_EVICTION="1")
    service = stack.start_worker(log_dir, env, name="evict-allowed")
    try:
        log = service.log()
        assert "volatile-lru" in log and "running anyway" in log
        assert "neither AOF nor RDB" in log
    finally:
        service.stop()


def test_health_fails_with_the_same_line(evicting: stack.Service, simulator: stack.Service) -> None:
    env = worker_env(simulator.url, REDIS_URL=evicting.url)
    done = subprocess.run(
        [VOICEMAIL, "health"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if "redis policy" in x)
    assert line.startswith("FAIL") and "volatile-lru" in line and "noeviction" in line
