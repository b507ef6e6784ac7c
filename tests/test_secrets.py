"""After real jobs of every outcome, no token is anywhere: not in Redis, not in the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from simulator import stack
from tasks import enqueue_get, enqueue_update, wait

from .conftest import ISSUED_TOKENS, SimAccount

pytestmark = pytest.mark.integration


def redis_contents(client: Any) -> Iterator[bytes]:
    """Every key and every value, whatever its type."""
    for key in client.scan_iter(count=1000):
        yield key
        kind = client.type(key).decode()
        if kind == "string":
            yield client.get(key) or b""
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield field
                yield value
        elif kind == "list":
            yield from client.lrange(key, 0, -1)
        elif kind == "set":
            yield from client.smembers(key)
        elif kind == "zset":
            yield from (member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            for _, fields in client.xrange(key):
                yield from fields.values()


def test_no_token_anywhere(
    make_account: Callable[..., SimAccount],
    sim: stack.SimulatorControl,
    redis_client: redis.Redis,
    worker: stack.Service,
    flower: stack.Service,
) -> None:
    ok, flaky, missing = make_account(), make_account(), make_account("missing-200")
    revoked = make_account(in_api=False)
    sim.script(flaky.name, ["502", "429:0", "reset"])
    jobs = [
        enqueue_update(ok.name, True, "a@acme.ru"),
        enqueue_update(flaky.name, False, "b@acme.ru"),
        enqueue_get(missing.name),
        enqueue_get(revoked.name),
    ]
    states = [wait(job, timeout=30).state for job in jobs]
    assert states == ["SUCCESS", "SUCCESS", "FAILURE", "FAILURE"]

    needles = [t.encode() for t in ISSUED_TOKENS]
    assert len(needles) >= 4
    scanned = 0
    for blob in redis_contents(redis_client):
        scanned += 1
        for needle in needles:
            assert needle not in blob, f"a token is stored in Redis: {blob[:80]!r}"
    assert scanned > 20  # the scan saw results, job records, the store, kombu's keys

    log = worker.log()
    assert "voicemail.update" in log
    for token in ISSUED_TOKENS:
        assert token not in log

    # Flower's task API, as an operator or another service reads it.
    user, password = flower.extra["auth"].split(":")

    def flower_tasks() -> str:
        response = httpx.get(flower.url + "/api/tasks", auth=(user, password), timeout=5)
        response.raise_for_status()
        return response.text

    stack.wait_until(lambda: all(job in flower_tasks() for job in jobs), 30, "Flower seeing jobs")
    listing = flower_tasks()
    for job in jobs:
        info = httpx.get(f"{flower.url}/api/task/info/{job}", auth=(user, password), timeout=5)
        listing += info.text
    assert ok.name in listing  # arguments are shown: account names, never tokens
    for token in ISSUED_TOKENS:
        assert token not in listing
    for token in ISSUED_TOKENS:
        assert token not in flower.log()
