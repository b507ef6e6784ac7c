"""Waves (`--waves`, `--wave-pause`) and the automatic stop (`--max-failures`,
`--min-sample`), through the `voicemail` executable, with a real worker, a Redis and a
simulator of their own; what was sent, and when, from the simulator's request times."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator import stack
from worker.coordination.bulk_records import Keys
from worker.queue import notify

from .own_stack import OwnStack, name, own_stack, rows_csv

ACCOUNTS = 1000


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[OwnStack]:
    # The default chunk size (1000) and rows in flight: a wave's end, not a chunk's, cuts.
    with own_stack(tmp_path, ACCOUNTS, "waves") as own:
        yield own


@pytest.mark.integration
def test_no_row_of_a_wave_is_sent_before_the_wave_before_settled(
    setup: OwnStack, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(rows_csv(1, ACCOUNTS))
    code, done, err = setup.cli("bulk", "submit", str(path), "--waves", "1%,10%,100%", "--wait")
    assert code == 0, err
    assert done["state"] == "DONE" and done["succeeded"] == ACCOUNTS
    bulk_id = str(done["bulk_id"])
    status = setup.status(bulk_id)
    assert (status["wave"], status["waves"]) == (3, 3)
    # One chunk per wave: none straddles a wave's end.
    assert int(setup.redis.hget(Keys(bulk_id).meta, "chunks") or 0) == 3

    waves = [setup.times(1, 10), setup.times(11, 100), setup.times(101, ACCOUNTS)]
    assert [len(w) for w in waves] == [10, 90, 900]  # one PATCH per row, nothing twice
    for k in (1, 2):
        ended = setup.meta(bulk_id, f"wave_ended:{k}")  # when its last row was recorded
        assert max(waves[k - 1]) < ended <= min(waves[k]), f"wave {k + 1} began too early"


@pytest.mark.integration
def test_wave_pause_stops_after_each_wave_and_resume_goes_on(
    setup: OwnStack, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(rows_csv(1, ACCOUNTS))
    args = ("bulk", "submit", str(path), "--waves", "1%,10%,100%", "--wave-pause")
    # --wait returns when the bulk pauses itself, saying why; exit 1 as it is not done.
    code, first, err = setup.cli(*args, "--wait")
    assert code == 1 and first["state"] == "PAUSED", err
    bulk_id = str(first["bulk_id"])
    assert f"bulk {bulk_id} paused: wave 1 of 3 ended" in err
    status = setup.status(bulk_id)
    assert (status["wave"], status["waves"], status["succeeded"]) == (1, 3, 10)
    assert status["paused_reason"].startswith("wave 1 of 3 ended")
    assert setup.times(11, ACCOUNTS) == []  # nothing of wave 2 was sent

    code, resumed, err = setup.cli("bulk", "resume", bulk_id)
    assert code == 0 and resumed["state"] == "RUNNING" and resumed["wave"] == 2, err
    assert "paused_reason" not in resumed
    status = setup.wait_state(bulk_id, "PAUSED")
    assert (status["wave"], status["succeeded"]) == (2, 100)
    assert status["paused_reason"].startswith("wave 2 of 3 ended")
    assert setup.times(101, ACCOUNTS) == []

    setup.cli("bulk", "resume", bulk_id)
    status = setup.wait_state(bulk_id, "DONE")
    assert (status["wave"], status["waves"], status["succeeded"]) == (3, 3, ACCOUNTS)
    assert len(setup.times(1, ACCOUNTS)) == ACCOUNTS


@pytest.mark.integration
def test_max_failures_pauses_the_bulk_and_notifies(setup: OwnStack, tmp_path: Path) -> None:
    # Every row after the 100th names an account the vendor does not know.
    setup.sim.add_accounts(
        [
            {"account": name(i), "token": f"tok-{name(i)}", "mode": "missing-500"}
            for i in range(101, ACCOUNTS + 1)
        ]
    )
    path = tmp_path / "rows.csv"
    path.write_text(rows_csv(1, ACCOUNTS))
    code, stopped, err = setup.cli(
        "bulk", "submit", str(path), "--max-failures", "5%", "--min-sample", "20",
        "--notify", "billing.voicemail_event", "--wait",
    )  # fmt: skip
    assert code == 1 and stopped["state"] == "PAUSED", err
    bulk_id = str(stopped["bulk_id"])
    status = setup.status(bulk_id)
    reason = status["paused_reason"]
    assert "--max-failures 5%" in reason and "UserNotFound (" in reason, reason
    assert f"bulk {bulk_id} paused: stopped:" in err

    failed_sent = setup.times(101, ACCOUNTS)
    assert 6 <= len(failed_sent) <= 40, f"{len(failed_sent)} failed rows sent before the stop"
    assert len(setup.times(1, 100)) == 100
    paused_at = setup.meta(bulk_id, "paused_at")
    assert max(failed_sent) <= paused_at + 1.0  # no request started a second after the stop
    # What was in flight settles; nothing else is sent while it stays paused.
    stack.wait_until(
        lambda: setup.status(bulk_id)["failed"] == len(setup.times(101, ACCOUNTS)),
        15,
        "rows in flight at the stop to settle",
    )

    # The notify task receives the PAUSED status (kombu's JSON envelope in a Redis list).
    stack.wait_until(lambda: setup.redis.llen(notify.DEFAULT_QUEUE) >= 1, 15, "a notification")
    (raw,) = setup.redis.lrange(notify.DEFAULT_QUEUE, 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "billing.voicemail_event"
    (sent,) = json.loads(base64.b64decode(message["body"]))[0]
    assert sent["bulk_id"] == bulk_id and sent["state"] == "PAUSED"
    assert "UserNotFound" in sent["paused_reason"]

    # A resume starts the count and the sample again: every row now fails, so the bulk
    # stops once the next 20 rows settled, not at once on the failures of before.
    before = len(setup.times(101, ACCOUNTS))
    code, resumed, err = setup.cli("bulk", "resume", bulk_id)
    assert code == 0 and resumed["state"] == "RUNNING", err
    status = setup.wait_state(bulk_id, "PAUSED")
    again = len(setup.times(101, ACCOUNTS)) - before
    assert 20 <= again <= 40, f"{again} rows sent after the resume"
    assert status["paused_reason"].startswith("stopped: "), status


@pytest.mark.integration
def test_cancel_between_waves_sends_nothing_of_the_waves_left(setup: OwnStack) -> None:
    args = ("bulk", "submit", "-", "--waves", "10,100%", "--wave-pause", "--wait")
    code, first, err = setup.cli(*args, stdin=rows_csv(1, 100))
    assert code == 1 and first["state"] == "PAUSED", err
    bulk_id = str(first["bulk_id"])

    code, cancelled, err = setup.cli("bulk", "cancel", bulk_id)
    assert code == 0 and cancelled["state"] == "CANCELLED", err
    # The held wave's chunk runs once, to count its rows cancelled: the bulk settles.
    stack.wait_until(lambda: setup.status(bulk_id)["pending"] == 0, 30, "the cancel to settle")
    status = setup.status(bulk_id)
    assert (status["succeeded"], status["cancelled"]) == (10, 90)
    assert setup.times(11, 100) == []


@pytest.mark.integration
def test_apply_rolls_a_plan_out_in_waves(setup: OwnStack, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(rows_csv(1, 100))
    code, plan, err = setup.cli("bulk", "plan", str(path))
    assert code == 0 and plan["change"] == 100, err
    read = setup.times(1, 100)  # one GET per account, by the plan

    code, paused, err = setup.cli(
        "bulk", "apply", str(plan["plan_id"]), "--waves", "10%,100%", "--wave-pause", "--wait"
    )
    assert code == 1 and paused["state"] == "PAUSED" and paused["succeeded"] == 10, err
    assert setup.times(11, 100) == read[10:]  # wave 2: nothing since the plan's reads
    bulk_id = str(paused["bulk_id"])
    setup.cli("bulk", "resume", bulk_id)
    status = setup.wait_state(bulk_id, "DONE")
    assert (status["succeeded"], status["stale"], status["wave"]) == (100, 0, 2)


@pytest.mark.integration
def test_a_scheduled_bulk_in_waves_starts_with_its_first_wave(setup: OwnStack) -> None:
    args = ("bulk", "submit", "-", "--waves", "10,100%", "--at", "+3s")
    code, submitted, err = setup.cli(*args, stdin=rows_csv(1, 100))
    assert code == 0, err
    bulk_id = str(submitted["bulk_id"])
    assert setup.status(bulk_id)["state"] == "SCHEDULED"
    assert setup.times(1, 100) == []

    status = setup.wait_state(bulk_id, "DONE")
    assert (status["succeeded"], status["wave"], status["waves"]) == (100, 2, 2)
    ended = setup.meta(bulk_id, "wave_ended:1")
    assert max(setup.times(1, 10)) < ended <= min(setup.times(11, 100))
