"""Cancelling a bulk in the middle, through the CLI, with a real rate-limited worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from simulator import stack
from worker.store.credentials import AccountRow, CredentialStore

from .conftest import TEST_SECRET_KEY, voicemail, worker_env

pytestmark = [pytest.mark.integration]
ACCOUNTS = 400


class Setup:
    def __init__(self, env: dict[str, str], sim: stack.SimulatorControl) -> None:
        self.env, self.sim = env, sim

    def cli(self, *args: str, stdin: str = "") -> tuple[int, dict[str, Any], str]:
        return voicemail(self.env, *args, stdin=stdin)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    own_redis = stack.start_redis(tmp_path)
    sim_service = stack.start_simulator(tmp_path, generate=ACCOUNTS)
    sim = stack.SimulatorControl(sim_service.url)
    client = redis.Redis.from_url(own_redis.url)
    names = [f"acct-{i:06d}" for i in range(1, ACCOUNTS + 1)]
    CredentialStore(client, TEST_SECRET_KEY).put_many(AccountRow(n, f"tok-{n}") for n in names)
    env = worker_env(
        sim_service.url,
        REDIS_URL=own_redis.url,
        VOICEMAIL_RATE_LIMIT="50",
        VOICEMAIL_BULK_CHUNK_SIZE="100",
    )
    worker = stack.start_worker(tmp_path, env, name="cancel")
    try:
        yield Setup(env, sim)
    finally:
        worker.stop()
        sim.close()
        sim_service.stop()
        client.close()
        own_redis.stop()


def test_cancel_stops_a_running_bulk_within_a_second(setup: Setup) -> None:
    rows = "account,send,email\n" + "".join(
        f"acct-{i:06d},true,c{i}@e.ru\n" for i in range(1, ACCOUNTS + 1)
    )
    _, submitted, _ = setup.cli("bulk", "submit", "-", stdin=rows)
    bulk_id = str(submitted["bulk_id"])
    stack.wait_until(lambda: len(setup.sim.stats()["patches"]) >= 40, 30, "40 rows PATCHed")

    code, status, err = setup.cli("bulk", "cancel", bulk_id)
    returned = time.time()
    assert code == 0 and status["state"] == "CANCELLED", (status, err)
    assert err == ""

    def settled() -> bool:
        return int(setup.cli("bulk", "status", bulk_id)[1]["pending"]) == 0

    stack.wait_until(settled, 30, "the cancelled bulk settling", step=0.5)
    _, final, _ = setup.cli("bulk", "status", bulk_id)
    assert final["state"] == "CANCELLED"
    assert final["cancelled"] > 0
    counted = final["succeeded"] + final["failed"] + final["cancelled"] + final["unchanged"]
    assert counted == final["total"] == ACCOUNTS
    # No request for the bulk started later than a second after the command returned.
    arrivals = [
        t for i in range(1, ACCOUNTS + 1) for t in setup.sim.account(f"acct-{i:06d}")["times"]
    ]
    late = [t - returned for t in arrivals if t > returned + 1.0]
    assert late == [], f"{len(late)} requests started more than 1 s after the cancel"
    print(f"last request {max(arrivals) - returned:+.3f}s after the cancel returned")

    # Cancelling again changes nothing, and says so.
    code, again, err = setup.cli("bulk", "cancel", bulk_id)
    assert code == 0 and again["state"] == "CANCELLED"
    assert "nothing to cancel" in err
    # The rows a cancel kept back go again with `bulk retry`.
    code, retried, _ = setup.cli("bulk", "retry", bulk_id)
    _, new_status, _ = setup.cli("bulk", "status", str(retried["bulk_id"]))
    assert new_status["total"] == final["cancelled"] + final["failed"]
