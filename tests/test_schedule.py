"""Change windows and timed undo (`--at`, `--revert-after`), through the `voicemail` CLI
against the simulator and real workers: a worker killed and Redis restarted (AOF) during
the wait lose nothing, a cancelled scheduled bulk sends nothing, and a timed revert puts
every account back 20 to 25 s after its bulk settled.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

import pytest
import redis

from simulator import stack
from worker.core.keys import BULKS

from .conftest import Isolated, voicemail

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 20  # seconds: `--at +20s`, `--revert-after 20s`
LATE = 5  # a scheduled start (or revert) comes at most this long after its time


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _rows(names: list[str], email: str) -> str:
    return "account,send,email\n" + "".join(f"{n},true,{n}@{email}.example.com\n" for n in names)


def _request_times(iso: Isolated, names: list[str]) -> dict[str, list[float]]:
    return {n: list(iso.sim.account(n)["times"]) for n in names}


def _restart_redis(iso: Isolated) -> None:
    """SIGTERM (Redis writes its AOF), then the same port and directory again."""
    port, data_dir = iso.redis.extra["port"], iso.redis.extra["dir"]
    iso.redis.stop()
    iso.redis = stack.start_redis(iso.log_dir, port=port, appendonly=True, data_dir=data_dir)


def _status(iso: Isolated, bulk_id: str) -> dict[str, Any]:
    """`bulk status` read in this process: the waits poll without a CLI start-up each."""
    from worker.coordination.bulk_status import read_status

    client = redis.Redis.from_url(iso.redis.url)
    try:
        return read_status(client, bulk_id).as_dict()
    finally:
        client.close()


def _bulks_by_state(url: str) -> dict[str, float]:
    from cli.metrics import VoicemailCollector

    client = redis.Redis.from_url(url)
    try:
        families = list(VoicemailCollector(client, client).collect())
    finally:
        client.close()
    (states,) = [f for f in families if f.name == "voicemail_bulks"]
    return {s.labels["state"]: s.value for s in states.samples}


def test_schedule_outlasts_a_worker_kill_and_a_redis_restart(isolated: Isolated) -> None:
    """The waits overlap: the timers are set, then the worker killed, Redis restarted and
    another worker started before they are due; the bulk undone on a timer comes last."""
    names = isolated.import_accounts(70)
    later, dropped, undone, kept = names[:20], names[20:40], names[40:60], names[60:65]
    planned = names[65:]
    first = isolated.worker("s1")
    plan_id, planned_until = _plan(isolated, planned)

    # A bulk for later, one scheduled then cancelled, and a plan applied later.
    scheduled = _submit_at(isolated, later, "later")
    when = _epoch(_status(isolated, scheduled)["scheduled_at"])
    cancelled = _submit_at(isolated, dropped, "never")
    assert isolated.cli_json("bulk", "cancel", cancelled)["state"] == "CANCELLED"
    applied, applied_when = _apply_at(isolated, plan_id)
    listed = [_json(line) for line in isolated.cli("bulk", "list").stdout.splitlines()]
    assert {b["bulk_id"]: b["state"] for b in listed}[scheduled] == "SCHEDULED"
    assert _bulks_by_state(isolated.redis.url)["SCHEDULED"] == 2

    # During the wait: the worker killed, Redis restarted, another worker started.
    first.kill()
    _restart_redis(isolated)
    assert _status(isolated, scheduled)["state"] == "SCHEDULED"
    isolated.worker("s2")
    print(f"second worker ready {when - time.time():.1f}s before the bulk was due")

    # A bulk undone on a timer: --wait returns once it settled, long before the revert;
    # and one whose timed revert is dropped: only the revert, the bulk runs.
    kept_id = isolated.cli_json(
        "bulk", "submit", "-", "--revert-after", f"{WAIT}s", input=_rows(kept, "kept")
    )["bulk_id"]
    isolated.cli_json("bulk", "cancel", kept_id, "--revert")
    began = time.monotonic()
    proc = isolated.cli(
        "bulk", "submit", "-", "--revert-after", f"{WAIT}s", "--wait", input=_rows(undone, "tmp")
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - began < WAIT
    reverted = isolated.cli_json("bulk", "status", _last_json(proc.stdout)["bulk_id"])
    assert reverted["state"] == "DONE" and reverted["succeeded"] == len(undone), reverted
    assert reverted["revertible"] is True
    settled, revert_at = _epoch(reverted["finished_at"]), _epoch(reverted["revert_at"])
    assert WAIT - 1 <= revert_at - settled <= WAIT + 1, reverted

    stack.wait_until(
        lambda: _status(isolated, scheduled)["state"] == "DONE",
        when - time.time() + LATE + 30,
        "the scheduled bulk DONE",
    )
    firsts = [min(t) for t in _request_times(isolated, later).values()]
    assert min(firsts) >= when, f"sent {when - min(firsts):.1f}s before its time"
    assert min(firsts) <= when + LATE, f"started {min(firsts) - when:.1f}s after its time"
    status = isolated.cli_json("bulk", "status", scheduled)
    assert (status["succeeded"], status["failed"]) == (len(later), 0), status
    assert all(isolated.sim.account(n)["email"] == f"{n}@later.example.com" for n in later)

    # The cancelled one: settled with every row cancelled, and nothing sent.
    stack.wait_until(lambda: _status(isolated, cancelled)["pending"] == 0, 30, "the cancel settled")
    assert _status(isolated, cancelled)["cancelled"] == len(dropped)
    assert not any(_request_times(isolated, dropped).values())

    _check_applied(isolated, applied, planned, planned_until, applied_when)
    _check_timed_revert(isolated, reverted["bulk_id"], undone, settled)
    kept_status = isolated.cli_json("bulk", "status", kept_id)
    assert kept_status["state"] == "DONE" and "reverted_by" not in kept_status, kept_status
    assert "revert_at" not in kept_status and "revert_after" not in kept_status, kept_status
    assert all(isolated.sim.account(n)["email"] == f"{n}@kept.example.com" for n in kept)
    print(f"scheduled start {min(firsts) - when:.1f}s after its time")


def _check_timed_revert(iso: Isolated, bulk_id: str, names: list[str], settled: float) -> None:
    def revert_done() -> bool:
        revert_id = str(_status(iso, bulk_id).get("reverted_by") or "")
        return bool(revert_id) and _status(iso, revert_id)["state"] == "DONE"

    stack.wait_until(revert_done, settled - time.time() + WAIT + LATE + 30, "the timed revert")
    revert = iso.cli_json("bulk", "status", iso.cli_json("bulk", "status", bulk_id)["reverted_by"])
    assert (revert["succeeded"], revert["failed"]) == (len(names), 0), revert
    # Journaled as the project's own doing, naming the --revert-after that scheduled it.
    journal = iso.cli("bulk", "journal", revert["bulk_id"])
    entries = [json.loads(line) for line in journal.stdout.splitlines()]
    assert [e["outcome"] for e in entries] == ["reverted"] * len(names), journal.stderr
    assert {e["actor"] for e in entries} == {"voicemail"}
    assert all("--revert-after" in e["reason"] for e in entries)
    times = _request_times(iso, names)
    for name in names:
        account = iso.sim.account(name)
        assert (account["send"], account["email"]) == (False, "owner@example.com"), account
        # Its last request is the revert's PATCH, 20 to 25 s after the bulk settled.
        assert WAIT <= max(times[name]) - settled <= WAIT + LATE, (name, times[name], settled)
    print(f"timed revert done {max(max(t) for t in times.values()) - settled:.1f}s after settling")


def _plan(iso: Isolated, names: list[str]) -> tuple[str, float]:
    """A plan of `names`: its id, and when its reads were over."""
    proc = iso.cli("bulk", "plan", "-", input=_rows(names, "planned"))
    assert proc.returncode == 0, proc.stderr
    return str(_last_json(proc.stdout)["plan_id"]), time.time()


def _apply_at(iso: Isolated, plan_id: str) -> tuple[str, float]:
    """The plan applied `--at +20s`: the bulk's id, and when it is to start."""
    applied = iso.cli_json("bulk", "apply", plan_id, "--at", f"+{WAIT}s")
    status = _status(iso, applied["bulk_id"])
    assert status["state"] == "SCHEDULED", status
    return str(applied["bulk_id"]), _epoch(status["scheduled_at"])


def _check_applied(
    iso: Isolated, bulk_id: str, names: list[str], planned_until: float, when: float
) -> None:
    """The applied plan ran at its time: after the plan's reads, no request before it."""
    stack.wait_until(lambda: _status(iso, bulk_id)["state"] == "DONE", 60, "the apply DONE")
    status = _status(iso, bulk_id)
    assert (status["succeeded"], status["failed"]) == (len(names), 0), status
    applied = [t for times in _request_times(iso, names).values() for t in times]
    applied = [t for t in applied if t > planned_until]
    assert applied and when <= min(applied) <= when + LATE, (applied, when)


def _submit_at(iso: Isolated, names: list[str], email: str, at: str = f"+{WAIT}s") -> str:
    proc = iso.cli("bulk", "submit", "-", "--at", at, input=_rows(names, email))
    assert proc.returncode == 0, proc.stderr
    assert "is scheduled: it starts at" in proc.stderr
    bulk_id = str(_last_json(proc.stdout)["bulk_id"])
    assert _status(iso, bulk_id)["state"] == "SCHEDULED"
    return bulk_id


def _json(line: str) -> Any:
    return json.loads(line)


def _last_json(stdout: str) -> Any:
    return _json(stdout.strip().splitlines()[-1])


def test_a_bulk_due_while_no_worker_ran_starts_with_the_first(isolated: Isolated) -> None:
    names = isolated.import_accounts(5)
    bulk_id = _submit_at(isolated, names, "first", at="+1s")
    when = _epoch(_status(isolated, bulk_id)["scheduled_at"])
    stack.wait_until(lambda: time.time() > when + 1, 10, "its time to pass")
    assert _status(isolated, bulk_id)["state"] == "SCHEDULED"

    isolated.worker("f1")  # returns once the worker is ready
    ready = time.time()
    stack.wait_until(lambda: _status(isolated, bulk_id)["state"] == "DONE", 30, "DONE")
    first = min(t for times in _request_times(isolated, names).values() for t in times)
    assert first <= ready + LATE, f"started {first - ready:.1f}s after the worker was ready"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--at", "tomorrow"], "--at 'tomorrow': give ISO 8601 with an offset"),
        (["--at", "2026-01-01T10:00:00"], "the time needs an offset"),
        (["--at", "2000-01-01T10:00:00Z"], "that is in the past"),
        (["--at", "+1h", "--dry-run"], "--at with --dry-run"),
        (["--revert-after", "soon"], "'soon' is not a duration"),
    ],
)
def test_a_bad_time_is_one_line_and_submits_nothing(
    redis_client: redis.Redis, options: list[str], says: str
) -> None:
    before = redis_client.zcard(BULKS)
    code, out, err = voicemail(dict(os.environ), "bulk", "submit", "-", *options, stdin=_ROW)
    assert code == 2 and out == {}, (code, out, err)
    assert err.count("\n") == 1 and says in err, err
    assert redis_client.zcard(BULKS) == before


_ROW = "account,send,email\nacme,true,vm@acme.example.com\n"


def test_cancel_revert_of_an_unknown_bulk_exits_1() -> None:
    code, _, err = voicemail(dict(os.environ), "bulk", "cancel", "nope", "--revert")
    assert code == 1 and "no bulk nope" in err, err


@pytest.mark.usefixtures("worker")
def test_resume_starts_a_scheduled_bulk_now_and_pause_leaves_it_waiting(
    make_account: Any, sim: Any
) -> None:
    from tasks.bulk import bulk_status, cancel_revert, change_bulk, submit_bulk

    account = make_account()
    row = {"account": account.name, "send": True, "email": "now@acme.example.com"}
    bulk_id = submit_bulk([row], at="+1h", revert_after="1d")
    assert bulk_status(bulk_id).state == "SCHEDULED"
    changed, status = change_bulk(bulk_id, "pause")
    assert (changed, status.state) == (False, "SCHEDULED")
    assert status.as_dict()["revert_after"] == 86400
    changed, status = change_bulk(bulk_id, "resume")
    # RUNNING, or DONE already: its one row may be sent before the status is read.
    assert changed and status.state in ("RUNNING", "DONE") and status.scheduled_at is None
    stack.wait_until(lambda: bulk_status(bulk_id).state == "DONE", 30, "DONE")
    assert sim.account(account.name)["email"] == "now@acme.example.com"
    assert bulk_status(bulk_id).revert_at is not None
    assert cancel_revert(bulk_id) is True and cancel_revert(bulk_id) is False
    assert bulk_status(bulk_id).revert_at is None


@pytest.mark.usefixtures("worker")
def test_a_timed_revert_whose_submitter_died_is_submitted_whole(
    make_account: Any, sim: Any, redis_client: redis.Redis
) -> None:
    """A delivery of the revert task killed mid-stream left a half-submitted revert and a
    claim that lapsed: the next delivery cancels that one and submits the revert whole."""
    from tasks.bulk import bulk_status, submit_bulk
    from tasks.idempotency import IdempotencyKey
    from tasks.timed import CLAIM, run_timed_revert
    from worker.coordination.bulk_records import Keys

    account = make_account()
    row = {"account": account.name, "send": True, "email": "undo@acme.example.com"}
    bulk_id = submit_bulk([row], revert_after="1h")
    stack.wait_until(lambda: bulk_status(bulk_id).revert_at is not None, 30, "settled")

    half = "half" + bulk_id[4:]  # the dead delivery's revert: rows begun, never finished
    assert IdempotencyKey(redis_client, CLAIM + bulk_id, 0.05, 60).claim(half).state == "new"
    redis_client.hset(Keys(half).meta, mapping={"created_at": time.time(), "rows": 0})
    redis_client.hset(Keys(bulk_id).meta, "reverted_by", half)
    stack.wait_until(lambda: run_timed_revert(bulk_id) is not None, 5, "the claim to lapse")

    assert bulk_status(half).state == "CANCELLED"
    revert_id = str(bulk_status(bulk_id).reverted_by)
    assert revert_id != half
    stack.wait_until(lambda: bulk_status(revert_id).state == "DONE", 30, "the revert DONE")
    assert sim.account(account.name)["email"] == "owner@example.com"
    assert run_timed_revert(bulk_id) is None  # done: the schedule forgot it
