"""Issue 18, finding 8: a Redis that lost its data (restarted without persistence).

A real redis-server without persistence, a real worker and the simulator. The numbers
the old Redis handed out are ahead of the new one's clock, as after a failover to a
replica whose clock is behind, so a counter that simply restarted from the clock would
number a newer update below older ones still running.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import redis

from simulator import stack
from worker.core import keys
from worker.queue.continuity import MARGIN_US, Continuity
from worker.store.credentials import AccountRow, CredentialStore

from .conftest import TEST_SECRET_KEY, voicemail, worker_env

ACCOUNTS = 90
NEWER = 10  # the bulk's last accounts, updated again once Redis came back empty
AHEAD_S = 600  # how far the old Redis's numbers are ahead of this one's clock
LOST_LINE = "Redis lost its data ("


def _import(url: str, names: list[str]) -> None:
    client = redis.Redis.from_url(url)
    CredentialStore(client, TEST_SECRET_KEY).put_many(AccountRow(n, f"tok-{n}") for n in names)
    client.close()


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_redis_that_lost_its_data_never_lets_an_older_update_win(tmp_path: Path) -> None:
    own = stack.start_redis(tmp_path)  # --save "" --appendonly no: a restart loses all
    sim_service = stack.start_simulator(tmp_path, generate=ACCOUNTS)
    sim = stack.SimulatorControl(sim_service.url)
    names = [f"acct-{i:06d}" for i in range(1, ACCOUNTS + 1)]
    _import(own.url, names)
    client = redis.Redis.from_url(own.url)
    seconds, micros = client.time()
    client.set(keys.SEQ, (seconds + AHEAD_S) * 1_000_000 + micros)
    client.close()
    env = worker_env(
        sim_service.url,
        REDIS_URL=own.url,
        VOICEMAIL_RATE_LIMIT="4",  # the bulk's last rows come 20 s after its first
        VOICEMAIL_BULK_CHUNK_SIZE="100",
    )
    env.pop("VOICEMAIL_REQUEUE_MAX", None)
    worker = stack.start_worker(tmp_path, env, name="loss")
    try:
        rows = "account,send,email\n" + "".join(f"{n},true,{n}@old.ru\n" for n in names)
        code, submitted, err = voicemail(env, "bulk", "submit", "-", stdin=rows)
        assert code == 0, err
        bulk_id = str(submitted["bulk_id"])
        stack.wait_until(lambda: sim.stats()["patch_total"] >= 5, 60, "the bulk's first rows")

        port, data_dir = own.extra["port"], own.extra["dir"]
        own.stop()
        own = stack.start_redis(tmp_path, port=port, data_dir=data_dir)
        _import(own.url, names)  # the credential store went with the rest
        # The worker says so within seconds (before the fix it never did); then newer
        # updates of the bulk's last accounts, numbered by the producer after the loss.
        with contextlib.suppress(TimeoutError):
            stack.wait_until(lambda: LOST_LINE in worker.log(), 10, "the worker noticing")
        for name in names[-NEWER:]:
            code, _, err = voicemail(env, "update", name, "--send", "--email", f"{name}@new.ru")
            assert code == 0, err

        chunk_done = re.compile(rf"bulk {bulk_id} chunk \d+: \d+ ok")
        stack.wait_until(lambda: bool(chunk_done.search(worker.log())), 120, "the chunk's end", 0.2)
        updated = re.compile(r"account=acct-\d+ (attempt=\d+ ok|seq=\d+ skipped)")
        stack.wait_until(
            lambda: len(updated.findall(worker.log())) >= NEWER, 60, "the newer updates' end", 0.2
        )
        held = {n: sim.account(n)["email"] for n in names}
        older = [n for n in names[:-NEWER] if held[n] != f"{n}@old.ru"]
        newer = [n for n in names[-NEWER:] if held[n] != f"{n}@new.ru"]
        assert older == [], f"{len(older)} rows of the bulk never applied: {older[:5]}"
        assert newer == [], f"{len(newer)} newer updates overwritten by the bulk: {newer[:5]}"
        assert worker.log().count(LOST_LINE) == 1, worker.log()[-3000:]
    finally:
        worker.stop()
        sim.close()
        sim_service.stop()
        own.stop()


def test_continuity_finds_a_lost_epoch_or_a_counter_gone_back(tmp_path: Path) -> None:
    """The heartbeat's look, against a real Redis of its own (a shared one's workers would
    see the loss too): nothing at the first look or while the data stays; the epoch gone,
    or the counter below one seen, reseeds the counter."""
    own = stack.start_redis(tmp_path)
    redis_client = redis.Redis.from_url(own.url)
    try:
        _looks(redis_client)
    finally:
        redis_client.close()
        own.stop()


def _looks(redis_client: redis.Redis) -> None:
    redis_client.delete(keys.EPOCH, keys.SEQ)
    look = Continuity()
    assert look.check(redis_client) == "" and redis_client.get(keys.EPOCH)
    seconds, micros = redis_client.time()
    ahead = (seconds + AHEAD_S) * 1_000_000 + micros
    redis_client.set(keys.SEQ, ahead)
    assert look.check(redis_client) == "" and look.highest == ahead

    redis_client.delete(keys.EPOCH, keys.SEQ)  # a restart without persistence
    assert look.check(redis_client) == "its epoch key is gone"
    assert int(redis_client.get(keys.SEQ) or 0) == ahead + MARGIN_US
    assert look.check(redis_client) == ""  # the new epoch is the one it knows now

    redis_client.set(keys.SEQ, ahead)  # a replica that lagged: the counter went back
    assert look.check(redis_client) == "the update counter went back"
    assert int(redis_client.get(keys.SEQ) or 0) == ahead + 2 * MARGIN_US

    other = Continuity()  # another worker, once the epoch was replaced by a third
    other.check(redis_client)
    redis_client.set(keys.EPOCH, "another")
    assert other.check(redis_client) == "its epoch key changed"
