"""The suite flushes only a Redis database it owns (tests/conftest.py `claim_db`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator import stack

from .conftest import OWNER_KEY, NotOurs, claim_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spare_db(tmp_path: Path) -> Iterator[str]:
    """A database on a Redis server of the test's own: nobody else's data is at stake."""
    server = stack.start_redis(tmp_path)
    try:
        yield server.url
    finally:
        server.stop()


def test_an_empty_database_is_marked_and_a_marked_one_flushed(spare_db: str) -> None:
    client = redis.Redis.from_url(spare_db)
    claim_db(spare_db)
    assert client.exists(OWNER_KEY)
    client.set("left-over", "1")
    claim_db(spare_db)  # marked: flushed again
    assert client.exists(OWNER_KEY)
    assert not client.exists("left-over")


def test_a_database_holding_data_without_the_mark_is_refused(spare_db: str) -> None:
    client = redis.Redis.from_url(spare_db)
    client.hset("voicemail:accounts", "real-customer", "sealed-token")
    with pytest.raises(NotOurs, match="refusing to flush") as refused:
        claim_db(spare_db)
    assert spare_db in str(refused.value)
    assert client.hget("voicemail:accounts", "real-customer") == b"sealed-token"


def test_the_suite_refuses_to_start_on_such_a_database(spare_db: str) -> None:
    client = redis.Redis.from_url(spare_db)
    client.hset("voicemail:accounts", "real-customer", "sealed-token")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co",
         "tests/test_settings.py"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "REDIS_URL": spare_db},
    )  # fmt: skip
    assert run.returncode != 0
    assert f"refusing to flush {spare_db}" in run.stdout + run.stderr
    assert client.hget("voicemail:accounts", "real-customer") == b"sealed-token"
