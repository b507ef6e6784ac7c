"""The prefork pool: each child builds its own worker context and runs chunks inline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from simulator import stack
from worker.store.credentials import CredentialStore

from .conftest import TEST_SECRET_KEY, SimAccount, worker_of_its_own

pytestmark = [pytest.mark.integration]


@pytest.fixture
def prefork(simulator: stack.Service, tmp_path: Path) -> Iterator[Celery]:
    with worker_of_its_own(simulator.url, tmp_path, "fork", pool="prefork", concurrency=2) as app:
        yield app


def test_a_prefork_worker_runs_jobs(
    prefork: Celery, make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    account = make_account(imported=False)
    store = CredentialStore(redis.Redis.from_url(prefork.conf.broker_url), TEST_SECRET_KEY)
    store.put(account.name, account.token)
    update = prefork.send_task("voicemail.update", args=[account.name, False, "fork@acme.ru"])
    assert update.get(timeout=30)["email"] == "fork@acme.ru"
    got = prefork.send_task("voicemail.get", args=[account.name])
    assert got.get(timeout=30) == {"account": account.name, "email": "fork@acme.ru", "send": False}
    assert sim.account(account.name)["patches"] == 1
