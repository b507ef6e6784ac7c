"""A stack of a test's own, for the tests that drive the `voicemail` executable: a Redis no
other test shares, a simulator with `accounts` generated accounts (`acct-000001` …, token
`tok-<name>`) stored in the credential store, and workers started as a user starts them,
every one stopped at the end. What was sent, and when, comes from the simulator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from simulator import stack
from worker.coordination.bulk_records import Keys
from worker.store.credentials import AccountRow, CredentialStore

from .conftest import TEST_SECRET_KEY, voicemail, worker_env


def name(i: int) -> str:
    return f"acct-{i:06d}"


def rows_csv(first: int, last: int, email: str = "new{i}@e.ru", send: str = "true") -> str:
    body = "".join(f"{name(i)},{send},{email.format(i=i)}\n" for i in range(first, last + 1))
    return "account,send,email\n" + body


class OwnStack:
    def __init__(self, tmp: Path, env: dict[str, str], sim: stack.SimulatorControl) -> None:
        self.tmp, self.env, self.sim = tmp, env, sim
        self.sim_url = env["PLUSOFON_API_URL"]
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.started: list[stack.Service] = []

    @property
    def worker(self) -> stack.Service:
        """The worker started last."""
        return self.started[-1]

    def start_worker(self, label: str, prefix: Sequence[str] = (), **env: str) -> stack.Service:
        """A worker more (run through `prefix`: `ip netns exec NS`), `env` on top."""
        service = stack.start_worker(self.tmp, {**self.env, **env}, name=label, prefix=prefix)
        self.started.append(service)
        return service

    def cli(self, *args: str, stdin: str = "") -> tuple[int, dict[str, Any], str]:
        return voicemail(self.env, *args, stdin=stdin)

    def status(self, bulk_id: str) -> dict[str, Any]:
        return self.cli("bulk", "status", bulk_id)[1]

    def wait_state(self, bulk_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
        stack.wait_until(
            lambda: self.status(bulk_id)["state"] == state, timeout, f"bulk {state}", step=0.2
        )
        return self.status(bulk_id)

    def wait_settled(self, bulk_id: str, timeout: float = 60) -> dict[str, Any]:
        stack.wait_until(
            lambda: self.status(bulk_id)["pending"] == 0, timeout, f"bulk {bulk_id}", step=0.3
        )
        return self.status(bulk_id)

    def times(self, first: int, last: int) -> list[float]:
        """When the simulator received each request for accounts first..last."""
        return [t for i in range(first, last + 1) for t in self.sim.account(name(i))["times"]]

    def patches(self) -> int:
        return sum(self.sim.stats()["patches"].values())

    def meta(self, bulk_id: str, field: str) -> float:
        return float(self.redis.hget(Keys(bulk_id).meta, field) or "nan")


@contextlib.contextmanager
def own_stack(
    tmp: Path,
    accounts: int,
    worker: str | None,
    env: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    appendonly: bool = False,
) -> Iterator[OwnStack]:
    """The stack, `env` on top of the tests' own, with a worker named `worker` started
    (None: none yet). Redis and the simulator listen on `host`."""
    own_redis = stack.start_redis(tmp, bind=host, appendonly=appendonly)
    sim_service = stack.start_simulator(tmp, host=host, generate=accounts)
    sim = stack.SimulatorControl(sim_service.url)
    own = OwnStack(tmp, worker_env(sim_service.url, REDIS_URL=own_redis.url, **(env or {})), sim)
    try:
        CredentialStore(own.redis, TEST_SECRET_KEY).put_many(
            AccountRow(name(i), f"tok-{name(i)}") for i in range(1, accounts + 1)
        )
        if worker is not None:
            own.start_worker(worker)
        yield own
    finally:
        for service in own.started:
            service.stop()
        own.redis.close()
        sim.close()
        sim_service.stop()
        own_redis.stop()
