"""A real Redis failover: a primary, a replica and three Sentinels, all `redis-server`.

The primary is killed in the middle of a 3,000-row bulk. Sentinel promotes the replica;
the worker, which knows only the Sentinels (`REDIS_URL=sentinel://...`), finds the new
primary by itself, with no restart, and the bulk settles with every row applied.
Replication is asynchronous, so the replica may lack the last writes before the kill:
rows whose outcome the failover made unsure are read back or sent again; the test prints
how many PATCHes were sent twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from simulator import stack
from worker.store.credentials import AccountRow, CredentialStore

from .conftest import TEST_SECRET_KEY, voicemail, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MASTER = "failover1"
ROWS = 3000
RESUME_WITHIN = 15.0  # seconds from the promotion to the first PATCH after it


@dataclass
class Cluster:
    """A primary, its replica and three Sentinels watching them."""

    log_dir: Path
    primary: stack.Service
    replica: stack.Service
    sentinels: list[stack.Service] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + "/0"

    def master_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                addr: Any = client.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if addr:
                return int(addr[1])
        return None

    def stop(self) -> None:
        for service in [*self.sentinels, self.replica, self.primary]:
            service.stop()


def _replicating(replica: stack.Service) -> bool:
    client = redis.Redis.from_url(replica.url)
    try:
        return bool(client.info("replication").get("master_link_status") == "up")
    finally:
        client.close()


def _sentinel_ready(port: int, primary_port: int) -> bool:
    """It watches the primary, and knows the replica and the two other Sentinels."""
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        master: Any = client.sentinel_master(MASTER)
        return (
            int(master["port"]) == primary_port
            and int(master["num-slaves"]) == 1
            and int(master["num-other-sentinels"]) == 2
        )
    finally:
        client.close()


def _start_sentinel(log_dir: Path, index: int, primary_port: int) -> tuple[stack.Service, int]:
    port = stack.free_port()
    conf = log_dir / f"sentinel-{index}.conf"
    # Down after 3 s without an answer: long enough that a busy machine does not fail
    # over a live primary, short enough for a test.
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {log_dir}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
        f"sentinel down-after-milliseconds {MASTER} 3000\n"
        f"sentinel failover-timeout {MASTER} 10000\n"
        f"sentinel parallel-syncs {MASTER} 1\n"
    )
    log_path = log_dir / f"sentinel-{index}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    try:
        process = subprocess.Popen(
            [stack.redis_server_binary(), str(conf), "--sentinel"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()
    return stack.Service(f"sentinel-{index}", process, log_path=log_path), port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    primary = stack.start_redis(tmp_path)
    primary_port = int(primary.extra["port"])
    replica = stack.start_redis(tmp_path, extra=["--replicaof", "127.0.0.1", str(primary_port)])
    found = Cluster(tmp_path, primary, replica)
    try:
        stack.wait_until(lambda: _replicating(replica), 30, "the replica in sync")
        for index in range(3):
            service, port = _start_sentinel(tmp_path, index, primary_port)
            found.sentinels.append(service)
            found.sentinel_ports.append(port)
        for port in found.sentinel_ports:
            stack.wait_until(
                lambda port=port: _sentinel_ready(port, primary_port),  # type: ignore[misc]
                60,
                f"sentinel {port} seeing the replica and the other sentinels",
                step=0.2,
            )
        yield found
    finally:
        found.stop()


@contextlib.contextmanager
def _replica_left_behind(cluster: Cluster) -> Iterator[None]:
    """The replica stopped (SIGSTOP) and its link dropped, while the bulk writes on: what
    the primary writes from then on never reaches it. The primary is killed inside the
    block; the replica goes on (SIGCONT) after it."""
    client = redis.Redis.from_url(cluster.primary.url)
    os.kill(cluster.replica.process.pid, signal.SIGSTOP)
    try:
        client.client_kill_filter(_type="replica")
        written = int(client.info("replication")["master_repl_offset"])
        stack.wait_until(
            lambda: int(client.info("replication")["master_repl_offset"]) > written + 100_000,
            10,
            "writes the replica never sees",
            step=0.01,
        )
        client.close()
        yield
    finally:
        client.close()
        os.kill(cluster.replica.process.pid, signal.SIGCONT)


def _rows(names: list[str]) -> str:
    return "account,send,email\n" + "".join(f"{n},true,{n}@failover.ru\n" for n in names)


def _done(env: dict[str, str], bulk_id: str) -> dict[str, Any]:
    _, status, _ = voicemail(env, "bulk", "status", bulk_id)
    return status


def _settled(env: dict[str, str], bulk_id: str, timeout: float) -> dict[str, Any]:
    """The bulk's status once DONE; at the deadline, a failure that shows the last one."""
    deadline = time.monotonic() + timeout
    status = _done(env, bulk_id)
    while status.get("state") != "DONE":
        assert time.monotonic() < deadline, f"the bulk did not settle: {status}"
        time.sleep(0.5)  # polling the status, not synchronisation
        status = _done(env, bulk_id)
    return status


@pytest.mark.timeout(420)
@pytest.mark.parametrize("lagging", [False, True], ids=["in-sync", "lagging"])
def test_a_sentinel_failover_mid_bulk_loses_no_row(cluster: Cluster, lagging: bool) -> None:
    """`lagging`: the replica is left behind for a moment before the kill (about a second
    of the bulk's writes: claims, outcomes, releases, acknowledgements never reach it), as
    a replica that lagged; a running chunk writes again the outcomes Redis lost, and a
    finished chunk whose acknowledgement was lost runs again."""
    sim_service = stack.start_simulator(cluster.log_dir, generate=ROWS)
    sim = stack.SimulatorControl(sim_service.url)
    names = [f"acct-{i:06d}" for i in range(1, ROWS + 1)]
    client = redis.Redis.from_url(cluster.primary.url)
    CredentialStore(client, TEST_SECRET_KEY).put_many(AccountRow(n, f"tok-{n}") for n in names)
    client.close()
    env = worker_env(
        sim_service.url,
        REDIS_URL=cluster.url,
        VOICEMAIL_SENTINEL_MASTER=MASTER,
        VOICEMAIL_RATE_LIMIT="150",  # 3,000 rows in about 20 s
        VOICEMAIL_BULK_CHUNK_SIZE="100",
    )
    env.pop("VOICEMAIL_REQUEUE_MAX", None)  # the default budget: an outage is no failure
    worker = stack.start_worker(cluster.log_dir, env, name="failover")
    try:
        code, submitted, err = voicemail(env, "bulk", "submit", "-", stdin=_rows(names))
        assert code == 0, err
        bulk_id = str(submitted["bulk_id"])
        stack.wait_until(
            lambda: sim.stats()["patch_total"] >= ROWS // 5, 120, "a fifth of the bulk", 0.1
        )
        old_port = int(cluster.primary.extra["port"])
        with _replica_left_behind(cluster) if lagging else contextlib.nullcontext():
            cluster.primary.kill()
        killed_at = time.monotonic()
        stack.wait_until(
            lambda: cluster.master_port() not in (None, old_port), 60, "the promotion", 0.1
        )
        promoted_at = time.monotonic()
        before = sim.stats()["patch_requests"]
        stack.wait_until(
            lambda: sim.stats()["patch_requests"] > before, 60, "a PATCH after the promotion", 0.1
        )
        resumed = time.monotonic() - promoted_at

        final = _settled(env, bulk_id, 240)
        states = {n: sim.account(n) for n in names}
        stale = [n for n, s in states.items() if s["email"] != f"{n}@failover.ru"]
        resent = sum(max(0, len(s["applied"]) - 1) for s in states.values())
        print(
            f"failover: promoted {promoted_at - killed_at:.1f}s after the kill; PATCHes "
            f"resumed {resumed:.1f}s after the promotion; {resent} of {ROWS} rows re-sent; "
            f"final {final}"
        )
        assert worker.process.poll() is None, "the worker must ride the failover, not exit"
        assert resumed <= RESUME_WITHIN, f"PATCHes resumed {resumed:.1f}s after the promotion"
        assert stale == [], f"{len(stale)} accounts lack the bulk's values: {stale[:5]}"
        # Lagging: a chunk whose end the failover lost runs again and finds its rows locked
        # by its own first run until the locks lapse; its rows wait, spending no re-queue.
        assert (final["succeeded"], final["failed"], final["pending"]) == (ROWS, 0, 0), final
    finally:
        worker.stop()
        sim.close()
        sim_service.stop()
