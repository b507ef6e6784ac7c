"""The prefork pool: each child builds its own worker context and runs chunks inline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from simulator import stack
from worker.core import keys
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


def _reap_as_a_reaper_would(client: redis.Redis, instance: str) -> None:
    """What `Liveness.reap` does to an instance whose heartbeat lapsed."""
    seconds, micros = client.time()
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.reaped(instance), seconds * 1000 + micros // 1000, ex=86_400)
        pipe.delete(keys.held(instance))
        pipe.hdel(keys.INSTANCES, instance)
        pipe.execute()


def test_prefork_children_follow_the_new_identity_after_a_reap(
    prefork: Celery, make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    """Finding 3: the children used to keep fencing with the dead instance (a module global
    inherited at fork), so every claim was refused for the day the mark lives."""
    client = redis.Redis.from_url(prefork.conf.broker_url, decode_responses=True)
    stack.wait_until(lambda: bool(client.hkeys(keys.INSTANCES)), 30, "the worker's first beat")
    (old,) = client.hkeys(keys.INSTANCES)
    _reap_as_a_reaper_would(client, str(old))
    stack.wait_until(
        lambda: any(i != old for i in client.hkeys(keys.INSTANCES)), 10, "a new identity"
    )
    account = make_account(imported=False)
    CredentialStore(client, TEST_SECRET_KEY).put(account.name, account.token)
    update = prefork.send_task("voicemail.update", args=[account.name, True, "reborn@acme.ru"])
    assert update.get(timeout=20)["email"] == "reborn@acme.ru"
    assert sim.account(account.name)["patches"] == 1
    # And `voicemail health` would name a worker still running as a reaped instance.
    (node,) = client.hkeys(keys.NODES)
    assert client.hget(keys.NODES, node) != old
