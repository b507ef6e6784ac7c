"""Heartbeats, held deliveries and reaping on a real Redis; engine processes die with the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
import redis

from simulator import stack
from worker.coordination import ordering as O
from worker.core.connections import text
from worker.queue import liveness as L

from .own_stack import own_stack, rows_csv

ROOT = Path(__file__).resolve().parent.parent


def _unacked(client: redis.Redis, tag: str, job_id: str) -> None:
    message = [{"headers": {"id": job_id}, "body": "", "properties": {}}, "celery", "celery"]
    client.hset(L.UNACKED, tag, json.dumps(message))


# Update numbers come from Redis's clock in microseconds; small test numbers sit on top.
BASE = int(time.time() * 1_000_000)


def claimed_by(client: redis.Redis, owner: str, account: str, seq: int) -> int:
    (verdict,) = O.Ordering(client).claim(owner, [(account, BASE + seq)])
    return verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(client: redis.Redis, restored: list[str], clock: Clock | None = None) -> L.Liveness:
    def restore(tags: Iterable[str]) -> None:
        restored.extend(tags)

    return L.Liveness(
        client,
        client,
        client,
        instance=L.new_instance_id(),
        node="test@host",
        restore=restore,
        clock=clock or Clock(),
    )


def test_a_dead_instance_has_its_messages_given_back_and_its_locks_freed(
    redis_client: redis.Redis,
) -> None:
    dead: list[str] = []
    gone = make(redis_client, dead)
    tag = f"tag-{uuid.uuid4().hex}"
    _unacked(redis_client, tag, str(uuid.uuid4()))
    gone.beat()
    gone.tick({tag})
    account = f"live-{uuid.uuid4().hex[:8]}"
    assert claimed_by(redis_client, f"{gone.instance}:f1", account, 5) == O.Verdict.CLAIMED
    redis_client.delete(L.heartbeat_key(gone.instance))  # it was killed: no more beats

    restored: list[str] = []
    reaper = make(redis_client, restored)
    reaper.tick(set())
    assert tag in restored
    assert redis_client.exists(L.dead_key(gone.instance))
    # The dead owner's lock is free at once: no 120 s lock lease to wait out.
    assert claimed_by(redis_client, "other:f2", account, 5) == O.Verdict.UNSURE
    # And should the dead one come back (a partition), it claims nothing more.
    assert claimed_by(redis_client, f"{gone.instance}:f3", f"{account}-b", 9) == O.Verdict.LOCKED


def test_a_live_instance_is_left_alone(redis_client: redis.Redis) -> None:
    alive = make(redis_client, [])
    tag = f"tag-{uuid.uuid4().hex}"
    _unacked(redis_client, tag, str(uuid.uuid4()))
    alive.beat()
    alive.tick({tag})
    restored: list[str] = []
    make(redis_client, restored).tick(set())
    assert tag not in restored


def test_a_worker_back_from_an_outage_waits_before_reaping(redis_client: redis.Redis) -> None:
    silent = make(redis_client, [])
    silent.beat()
    redis_client.delete(L.heartbeat_key(silent.instance))
    restored: list[str] = []
    clock = Clock()
    reaper = make(redis_client, restored, clock)
    reaper.failed()  # it could not reach Redis itself a moment ago
    reaper.tick(set())
    assert not redis_client.exists(L.dead_key(silent.instance))
    clock.now += L.REAP_GRACE
    reaper.tick(set())
    assert redis_client.exists(L.dead_key(silent.instance))


def test_a_worker_killed_in_redis_first_seconds_is_reaped_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every reap once waited until Redis had been up `REAP_GRACE` seconds, a worker that
    beat in this Redis's life and was killed included: the recovery benchmark's resume
    after a kill -9 took 6-7 s instead of 4. Only an instance whose last beat came before
    the restart waits (its heartbeat may have run out while Redis was down)."""
    # Far longer than this test runs: Redis is "young" throughout, however busy the machine.
    monkeypatch.setattr(L, "REAP_GRACE", 3600.0)
    own = stack.start_redis(tmp_path, appendonly=True)
    port, data_dir = own.extra["port"], own.extra["dir"]
    client = redis.Redis.from_url(own.url)
    try:
        # Redis gives its age in whole seconds, so it is sure a beat came after its start
        # only from its second second on.
        stack.wait_until(
            lambda: int(client.info("server")["uptime_in_seconds"]) >= 1, 30, "Redis 1 s up"
        )
        killed = make(client, [])
        killed.beat()
        client.delete(L.heartbeat_key(killed.instance))  # killed: its heartbeat lapsed
        assert make(client, []).reap() == 1
        assert client.exists(L.dead_key(killed.instance))

        before_restart = make(client, [])
        before_restart.beat()
        client.shutdown()  # AOF fsynced; the instance's heartbeat comes back with it
        own.process.wait(10)
        client.close()
        own = stack.start_redis(tmp_path, port=port, appendonly=True, data_dir=data_dir)
        client = redis.Redis.from_url(own.url)
        client.delete(L.heartbeat_key(before_restart.instance))  # ran out while Redis was down
        reaper = make(client, [])
        assert reaper.reap() == 0  # it may be reconnecting: it gets REAP_GRACE to beat again
        assert not client.exists(L.dead_key(before_restart.instance))
        monkeypatch.setattr(L, "REAP_GRACE", 0.0)
        assert reaper.reap() == 1
    finally:
        client.close()
        own.stop()


def test_deliveries_celery_dropped_go_back_after_two_ticks(redis_client: redis.Redis) -> None:
    restored: list[str] = []
    me = make(redis_client, restored)
    running, dropped, acked = (f"tag-{uuid.uuid4().hex}" for _ in range(3))
    for tag in (running, dropped):
        _unacked(redis_client, tag, str(uuid.uuid4()))
    me.tick({running, dropped, acked})
    # The broker connection was lost: Celery forgot `dropped`; `acked` finished normally.
    me.tick({running})
    assert restored == []  # not yet: it may just be between lists
    me.tick({running})
    assert restored == [dropped]
    assert redis_client.smembers(L.held_key(me.instance)) == {running.encode()}


def test_a_finished_job_whose_ack_was_lost_is_not_run_again(redis_client: redis.Redis) -> None:
    restored: list[str] = []
    me = make(redis_client, restored)
    tag, job = f"tag-{uuid.uuid4().hex}", str(uuid.uuid4())
    _unacked(redis_client, tag, job)
    redis_client.set(f"celery-task-meta-{job}", json.dumps({"status": "SUCCESS"}))
    me.tick({tag})
    me.tick(set())
    me.tick(set())
    assert restored == []
    assert not redis_client.hexists(L.UNACKED, tag)


ENGINE_PARENT = """
import os, sys
from worker.core.settings import load_settings
from worker.engine.pool import Engine
engine = Engine(load_settings(VOICEMAIL_BULK_PROCESSES=1))
engine.start()
print(" ".join(str(p) for p in engine._pool._processes), flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in fh.read()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
def test_engine_processes_die_with_the_worker() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ENGINE_PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=dict(os.environ),
        text=True,
    ) as parent:
        assert parent.stdout is not None
        children = [int(p) for p in parent.stdout.readline().split()]
        assert children and all(_alive(c) for c in children)
        parent.kill()  # SIGKILL to the main process only, not its group
        parent.wait(10)
    stack.wait_until(lambda: not any(_alive(c) for c in children), 10, "the engine exiting")


def test_a_worker_found_dead_goes_on_under_a_new_identity(redis_client: redis.Redis) -> None:
    ghost = make(redis_client, [])
    ghost.beat()
    old = ghost.instance
    redis_client.delete(L.heartbeat_key(old))  # cut off: its heartbeat lapsed
    redis_client.set(L.dead_key(old), "1")  # and it was reaped
    tag = f"tag-{uuid.uuid4().hex}"
    ghost.tick({tag})  # nothing recorded under a reaped instance: nobody would give it back
    assert not redis_client.exists(L.held_key(old))
    assert ghost.beat() is False  # the heartbeat refused, it goes on as another at once
    assert ghost.instance != old
    assert not redis_client.exists(L.heartbeat_key(old))
    ghost.tick({tag})
    assert redis_client.smembers(L.held_key(ghost.instance)) == {tag.encode()}
    assert redis_client.exists(L.heartbeat_key(ghost.instance))


def test_a_slow_tick_does_not_delay_the_heartbeat(redis_client: redis.Redis) -> None:
    """Finding 4: the lease tick (held deliveries, the unacked hash, the sweep, the bulk
    notifications) once wrote the heartbeat too; a tick past 4 s made a live worker look
    dead, and it was reaped."""
    from worker.core.settings import load_settings
    from worker.queue.lease import LeaseKeeper

    instance = L.new_instance_id()
    lease = LeaseKeeper(
        load_settings(),
        instance=instance,
        reborn=L.new_instance_id,
        node="",
        republish=lambda record, job: None,
        restore=lambda tags: None,
        tick=lambda: time.sleep(7),  # a tick far slower than the heartbeat's TTL
    )
    lease.start()
    try:
        beating = L.heartbeat_key(instance)
        stack.wait_until(lambda: bool(redis_client.exists(beating)), 5, "the first beat")
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            assert redis_client.exists(beating), "the heartbeat lapsed behind a slow tick"
            time.sleep(0.2)
    finally:
        lease.stop()


BULK_ROWS = 1000


def test_a_worker_found_dead_stops_its_bulk_sends_within_a_second(tmp_path: Path) -> None:
    """Finding 4: a reaped worker's engine went on sending on its old claims (its guard
    only checked that Redis answered). Every instance the worker takes is marked reaped
    while we count, as a reaper would, so no claim of it can hold."""
    limits = {
        "VOICEMAIL_RATE_LIMIT": "100",  # about 10 s for the bulk: one chunk, running
        "VOICEMAIL_BULK_CHUNK_SIZE": str(BULK_ROWS),
    }
    with own_stack(tmp_path, BULK_ROWS, "ghost", limits) as own:
        code, _, err = own.cli("bulk", "submit", "-", stdin=rows_csv(1, BULK_ROWS))
        assert code in (0, 1), err
        stack.wait_until(lambda: own.patches() >= 100, 60, "the bulk sending")
        client = own.redis

        def reap_every_instance() -> None:
            for instance in client.hkeys(L.INSTANCES_KEY):
                seconds, micros = client.time()
                client.set(L.dead_key(text(instance)), seconds * 1000 + micros // 1000, ex=3600)
                client.hdel(L.INSTANCES_KEY, instance)

        reap_every_instance()
        marked = time.monotonic()
        while time.monotonic() < marked + 1.0:
            reap_every_instance()
            time.sleep(0.05)
        before = own.patches()
        while time.monotonic() < marked + 4.0:
            reap_every_instance()
            time.sleep(0.05)
        assert own.patches() == before, "a reaped worker went on sending on its old claims"
        assert before < BULK_ROWS
