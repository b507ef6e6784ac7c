"""Cancel, pause, resume, revert, list and notify, through the `voicemail` executable, with
real worker processes, a Redis and a rate-limited simulator of their own."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simulator import stack
from worker.coordination.bulk_records import Keys
from worker.queue import notify

from .conftest import VOICEMAIL
from .own_stack import OwnStack, name, own_stack, rows_csv

pytestmark = [pytest.mark.integration]
ACCOUNTS = 300


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[OwnStack]:
    limits = {"VOICEMAIL_RATE_LIMIT": "50", "VOICEMAIL_BULK_CHUNK_SIZE": "50"}
    with own_stack(tmp_path, ACCOUNTS, "safety", limits) as own:
        yield own


def test_cancel_stops_a_running_bulk_within_a_second(setup: OwnStack) -> None:
    _, submitted, _ = setup.cli("bulk", "submit", "-", stdin=rows_csv(1, ACCOUNTS))
    bulk_id = str(submitted["bulk_id"])
    stack.wait_until(lambda: setup.patches() >= 40, 30, "40 rows PATCHed")

    code, status, err = setup.cli("bulk", "cancel", bulk_id)
    returned = time.time()
    assert code == 0 and status["state"] == "CANCELLED" and err == "", (status, err)
    final = setup.wait_settled(bulk_id)
    assert final["state"] == "CANCELLED" and final["cancelled"] > 0
    counted = final["succeeded"] + final["failed"] + final["cancelled"] + final["unchanged"]
    assert counted == final["total"] == ACCOUNTS
    # No request for the bulk started later than a second after the command returned.
    arrivals = setup.times(1, ACCOUNTS)
    late = [t - returned for t in arrivals if t > returned + 1.0]
    assert late == [], f"{len(late)} requests started more than 1 s after the cancel"
    print(f"last request {max(arrivals) - returned:+.3f}s after the cancel returned")

    # Cancelling again changes nothing, and says so.
    code, again, err = setup.cli("bulk", "cancel", bulk_id)
    assert code == 0 and again["state"] == "CANCELLED" and "nothing to cancel" in err
    # The rows a cancel kept back go again with `bulk retry`.
    code, retried, _ = setup.cli("bulk", "retry", bulk_id)
    new_status = setup.status(str(retried["bulk_id"]))
    assert new_status["total"] == final["cancelled"] + final["failed"]


def test_pause_holds_across_a_worker_kill_then_resume_finishes(setup: OwnStack) -> None:
    _, submitted, _ = setup.cli("bulk", "submit", "-", stdin=rows_csv(1, 200))
    bulk_id = str(submitted["bulk_id"])
    stack.wait_until(lambda: setup.patches() >= 30, 30, "30 rows PATCHed")

    code, paused, err = setup.cli("bulk", "pause", bulk_id)
    returned = time.time()
    assert code == 0 and paused["state"] == "PAUSED" and err == "", (paused, err)
    # In-flight requests settle; then nothing moves. (Waiting out a span on purpose: what
    # is checked is that nothing happens in it.)
    time.sleep(1.5)
    late = [t - returned for t in setup.times(1, 200) if t > returned + 1.0]
    assert late == [], f"{len(late)} requests started more than 1 s after the pause"
    held = setup.status(bulk_id)
    assert held["state"] == "PAUSED" and held["pending"] > 0

    # Kill the worker outright and start another: the bulk stays paused.
    setup.worker.kill()
    setup.start_worker("safety2")
    before = setup.patches()
    keys = Keys(bulk_id)
    stack.wait_until(lambda: setup.redis.hlen(keys.parked) > 0, 30, "chunks parked")
    assert setup.patches() == before
    assert setup.status(bulk_id)["state"] == "PAUSED"
    # Nothing of a paused bulk expires, however long the pause lasts.
    assert setup.redis.ttl(keys.meta) == -1 and setup.redis.ttl(keys.done) == -1
    for number in range(int(setup.redis.hget(keys.meta, "chunks") or 0)):
        assert setup.redis.ttl(keys.chunk(number)) in (-1, -2), number  # kept, or done

    # Pausing again changes nothing, and says so.
    code, again, err = setup.cli("bulk", "pause", bulk_id)
    assert code == 0 and again["state"] == "PAUSED" and "nothing to pause" in err

    code, resumed, err = setup.cli("bulk", "resume", bulk_id)
    assert code == 0 and resumed["state"] == "RUNNING" and err == ""
    final = setup.wait_settled(bulk_id)
    assert final["state"] == "DONE"
    assert (final["succeeded"], final["failed"], final["cancelled"]) == (200, 0, 0)
    assert setup.redis.ttl(keys.meta) > 0  # expires as usual again
    # Every account changed exactly once: no row was sent twice across pause and kill.
    applied = [len(setup.sim.account(name(i))["applied"]) for i in range(1, 201)]
    assert applied == [1] * 200

    code, _, err = setup.cli("bulk", "resume", bulk_id)
    assert code == 0 and "nothing to resume" in err


def test_a_paused_bulk_can_be_cancelled(setup: OwnStack) -> None:
    _, submitted, _ = setup.cli("bulk", "submit", "-", stdin=rows_csv(1, 200))
    bulk_id = str(submitted["bulk_id"])
    stack.wait_until(lambda: setup.patches() >= 20, 30, "20 rows PATCHed")
    setup.cli("bulk", "pause", bulk_id)
    code, cancelled, err = setup.cli("bulk", "cancel", bulk_id)
    assert code == 0 and cancelled["state"] == "CANCELLED" and err == ""
    final = setup.wait_settled(bulk_id)
    assert final["state"] == "CANCELLED" and final["cancelled"] > 0
    counted = final["succeeded"] + final["failed"] + final["cancelled"] + final["unchanged"]
    assert counted == final["total"] == 200


def test_revert_restores_every_account_but_one_changed_by_hand(setup: OwnStack) -> None:
    originals = {i: setup.sim.account(name(i)) for i in range(1, 101)}
    # Row 5 already holds its target: unchanged, and not reverted.
    already = (originals[5]["send"], originals[5]["email"])
    rows = rows_csv(1, 100).replace(
        f"{name(5)},true,new5@e.ru", f"{name(5)},{str(already[0]).lower()},{already[1]}"
    )
    code, done, err = setup.cli("bulk", "submit", "-", "--revertible", "--wait", stdin=rows)
    assert code == 0, err
    assert (done["succeeded"], done["unchanged"]) == (99, 1)
    bulk_id = str(done["bulk_id"])
    assert setup.status(bulk_id)["revertible"] is True

    # Someone changes one account by hand in between.
    response = httpx.patch(
        f"{setup.sim_url}/api/v1/voicemail",
        json={"send": False, "email": "by-hand@e.ru"},
        headers={"Authorization": f"Bearer tok-{name(7)}", "Client": "10553"},
    )
    response.raise_for_status()

    code, summary, err = setup.cli("bulk", "revert", bulk_id, "--wait")
    assert code == 1, err  # one row failed: the conflict
    assert (summary["succeeded"], summary["failed"]) == (98, 1), summary
    assert summary["reverts"] == bulk_id
    conflict = [line for line in err.splitlines() if line.startswith("line ")]
    assert len(conflict) == 1 and conflict[0].startswith(f"line 8: {name(7)}: Conflict: ")
    for i in range(1, 101):
        account = setup.sim.account(name(i))
        if i == 7:
            assert (account["send"], account["email"]) == (False, "by-hand@e.ru")
        else:
            expected = (originals[i]["send"], originals[i]["email"])
            assert (account["send"], account["email"]) == expected, i
    revert_id = str(summary["bulk_id"])
    failures = _stdout(setup, "bulk", "failures", revert_id)
    assert len(failures) == 2 and failures[1].startswith(f"{name(7)},false,")
    assert '"Conflict: ' in failures[1]
    # A bulk is reverted once; the refusal names the revert.
    code, _, err = setup.cli("bulk", "revert", bulk_id)
    assert code == 2 and revert_id in err and len(err.strip().splitlines()) == 1
    # `bulk list` shows both, newest first, the revert naming what it undoes.
    listed = [json.loads(line) for line in _stdout(setup, "bulk", "list", "--limit", "2")]
    assert [b["bulk_id"] for b in listed] == [revert_id, bulk_id]
    assert listed[0]["reverts"] == bulk_id and "reverts" not in listed[1]
    expected_keys = {"bulk_id", "state", "total", "succeeded", "failed", "cancelled"}
    expected_keys |= {"unchanged", "pending", "created_at"}
    assert expected_keys <= set(listed[1])


def test_revert_refuses_a_bulk_not_revertible_or_still_running(setup: OwnStack) -> None:
    code, done, _ = setup.cli("bulk", "submit", "-", "--wait", stdin=rows_csv(101, 110))
    assert code == 0
    code, _, err = setup.cli("bulk", "revert", str(done["bulk_id"]))
    assert code == 2 and "--revertible" in err and len(err.strip().splitlines()) == 1

    _, running, _ = setup.cli("bulk", "submit", "-", "--revertible", stdin=rows_csv(111, 300))
    code, _, err = setup.cli("bulk", "revert", str(running["bulk_id"]))
    assert code == 2 and "cancel it, or let it finish" in err
    setup.cli("bulk", "cancel", str(running["bulk_id"]))


def test_notify_sends_one_message_with_the_status(setup: OwnStack) -> None:
    code, done, err = setup.cli(
        "bulk", "submit", "-", "--wait", "--notify", "billing.voicemail_done",
        stdin=rows_csv(201, 220),
    )  # fmt: skip
    assert code == 0, err
    bulk_id = str(done["bulk_id"])
    stack.wait_until(lambda: setup.redis.llen(notify.DEFAULT_QUEUE) >= 1, 15, "a notification")
    # A consumer need not be Python: the message is kombu's JSON envelope in a Redis list.
    (raw,) = setup.redis.lrange(notify.DEFAULT_QUEUE, 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "billing.voicemail_done"
    assert message["headers"]["id"] == notify.task_id(bulk_id)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    (status,) = args
    assert status["bulk_id"] == bulk_id and status["state"] == "DONE" and status["pending"] == 0
    assert status["succeeded"] == 20
    # Sent once: the worker's ticks (one a second) drain the outbox and send nothing more.
    time.sleep(2.5)
    assert setup.redis.llen(notify.DEFAULT_QUEUE) == 1


def test_cancel_stops_a_streaming_producer(setup: OwnStack) -> None:
    producer = subprocess.Popen(
        [VOICEMAIL, "bulk", "submit", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=setup.env,
    )
    assert producer.stdin is not None
    producer.stdin.write(rows_csv(1, 120))
    producer.stdin.flush()
    ids: list[str] = []

    def started() -> bool:
        listed = _stdout(setup, "bulk", "list", "--limit", "1")
        ids[:] = [json.loads(line)["bulk_id"] for line in listed]
        return bool(ids) and setup.status(ids[0])["total"] >= 100

    stack.wait_until(started, 30, "the producer streaming")
    code, cancelled, _ = setup.cli("bulk", "cancel", ids[0])
    assert code == 0 and cancelled["state"] == "CANCELLED"
    accepted = cancelled["total"]
    more = "".join(f"{name(i)},true,x{i}@e.ru\n" for i in range(121, 300))
    _, err = producer.communicate(more, timeout=30)
    assert producer.returncode == 1, err  # a cancelled bulk: exit 1
    final = setup.wait_settled(ids[0])
    assert final["total"] == accepted < 179 + 120


def _stdout(setup: OwnStack, *args: str) -> list[str]:
    done = subprocess.run(
        [VOICEMAIL, *args], capture_output=True, text=True, env=setup.env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()
