"""Bulk updates through real workers, the engine processes and the simulator."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import cli
from simulator import stack
from tasks.bulk import bulk_failures, bulk_status, cancel_revert, retry_bulk, submit_bulk
from tasks.producer import credential_store
from worker.coordination.bulk_status import BulkStatus
from worker.store.credentials import AccountRow

from .conftest import ISSUED_TOKENS, Isolated, voicemail, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def make_accounts(sim: stack.SimulatorControl, count: int, **sim_fields: Any) -> list[str]:
    prefix = f"bulk-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:04d}" for i in range(count)]
    tokens = [f"tok-{name}" for name in names]
    ISSUED_TOKENS.extend(tokens)
    sim.add_accounts(
        [{"account": n, "token": t, **sim_fields} for n, t in zip(names, tokens, strict=True)]
    )
    credential_store().put_many(AccountRow(n, t) for n, t in zip(names, tokens, strict=True))
    return names


def wait_bulk(bulk_id: str, timeout: float = 60) -> BulkStatus:
    stack.wait_until(lambda: bulk_status(bulk_id).done, timeout, f"bulk {bulk_id} to finish")
    return bulk_status(bulk_id)


def rows_for(names: list[str], send: bool = True) -> list[dict[str, Any]]:
    return [{"account": n, "send": send, "email": f"{n}@new.example.com"} for n in names]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_bad_rows_next_to_good_ones(sim: stack.SimulatorControl, tmp_path: Path) -> None:
    names = make_accounts(sim, 30)
    lines = ["account,send,email"] + [f"{n},true,{n}@new.example.com" for n in names]
    lines += [
        "never-imported-account,true,x@acme.ru",  # line 32
        f"{names[0]},false,dup@acme.ru",  # 33: the same account twice
        f"{names[1]},maybe,x@acme.ru",  # 34
        f"{names[2]},true,not-an-email",  # 35
        f"{names[3]},true",  # 36: missing column
    ]
    path = tmp_path / "bulk.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run("bulk", "submit", str(path), "--wait", "--timeout", "60")
    summary = json.loads(out)
    assert code == 1
    assert {k: summary[k] for k in ("state", "total", "succeeded", "failed", "pending")} == {
        "state": "DONE",
        "total": 35,
        "succeeded": 30,
        "failed": 5,
        "pending": 0,
    }
    for name in names:
        account = sim.account(name)
        assert (account["patches"], account["email"]) == (1, f"{name}@new.example.com")

    code, out, _ = run("bulk", "failures", summary["bulk_id"])
    assert code == 0
    failures = {int(r["line"]): r for r in csv.DictReader(io.StringIO(out))}
    assert sorted(failures) == [32, 33, 34, 35, 36]
    assert "not in the credential store" in failures[32]["reason"]
    assert "already given on line 2" in failures[33]["reason"]
    assert "send must be true or false" in failures[34]["reason"]
    assert "email" in failures[35]["reason"]
    assert "missing column email" in failures[36]["reason"]

    code, out, _ = run("bulk", "status", summary["bulk_id"])
    status = json.loads(out)
    assert status["finished_at"] >= status["started_at"] >= status["created_at"]


def test_dry_run_sends_nothing(sim: stack.SimulatorControl, tmp_path: Path) -> None:
    names = make_accounts(sim, 10)
    path = tmp_path / "dry.jsonl"
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in rows_for(names))
        + '{"account": "ghost-account", "send": true, "email": "g@acme.ru"}\n'
    )
    code, out, err = run("bulk", "submit", str(path), "--dry-run")
    summary = json.loads(out)
    assert code == 1  # one row would fail
    assert summary["state"] == "DRY_RUN"
    assert (summary["total"], summary["would_send"], summary["failed"]) == (11, 10, 1)
    assert "line 11: ghost-account: AccountNotFound" in err
    assert all(sim.account(n)["requests"] == 0 for n in names)


def test_only_changed_skips_accounts_in_the_target_state(sim: stack.SimulatorControl) -> None:
    same = make_accounts(sim, 10, send=True, email="already@acme.ru")
    other = make_accounts(sim, 10, send=False, email="already@acme.ru")
    rows = [{"account": n, "send": True, "email": "already@acme.ru"} for n in same + other]
    status = wait_bulk(submit_bulk(rows, only_changed=True))
    assert (status.succeeded, status.unchanged, status.failed) == (10, 10, 0)
    assert all(sim.account(n)["patches"] == 0 for n in same)
    assert all(sim.account(n)["patches"] == 1 for n in other)
    assert all(sim.account(n)["requests"] == 1 for n in same)  # one GET, no PATCH


def test_failures_then_retry(sim: stack.SimulatorControl) -> None:
    good = make_accounts(sim, 20)
    missing = make_accounts(sim, 3, mode="missing-200")
    bulk_id = submit_bulk(rows_for(good + missing), revert_after="1h", max_failures="50%")
    status = wait_bulk(bulk_id)
    assert (status.succeeded, status.failed) == (20, 3)
    failures = list(bulk_failures(bulk_id))
    assert {f["account"] for f in failures} == set(missing)
    assert all(f["reason"] == "UserNotFound: User not found." for f in failures)
    assert all(sim.account(n)["requests"] == 1 for n in missing)  # permanent: one request

    # The API learns about the accounts; re-drive just the failed rows.
    sim.add_accounts([{"account": n, "token": f"tok-{n}"} for n in missing])
    retried = wait_bulk(retry_bulk(bulk_id))
    assert (retried.total, retried.succeeded, retried.failed) == (3, 3, 0)
    assert all(sim.account(n)["patches"] == 1 for n in good + missing)
    # Undone on the same timer as its bulk: the retry's changes too.
    assert retried.revertible and retried.revert_at is not None
    assert retried.revert_at - (retried.finished_at or 0) == pytest.approx(3600, abs=5)
    assert cancel_revert(retried.bulk_id) and cancel_revert(bulk_id)


def test_a_finished_bulk_keeps_a_bit_per_row_and_its_failures(
    sim: stack.SimulatorControl, redis_client: Any
) -> None:
    from worker.coordination.bulk_records import Keys

    good = make_accounts(sim, 200)
    missing = make_accounts(sim, 2, mode="missing-200")
    bulk_id = submit_bulk(rows_for(good + missing))
    assert wait_bulk(bulk_id).succeeded == 200
    keys = Keys(bulk_id)
    left = {k.decode().removeprefix(keys.meta) for k in redis_client.scan_iter(keys.meta + "*")}
    # No chunk, no duplicate check: the meta hash, one bit per line, the failures, the rate.
    assert left == {"", ":done", ":failures", ":rate"}
    assert redis_client.type(keys.done) == b"string"
    assert redis_client.strlen(keys.done) <= 202 // 8 + 1
    assert redis_client.llen(keys.failures) == 2


def test_transient_rows_are_requeued_without_resending_the_rest(
    sim: stack.SimulatorControl,
) -> None:
    names = make_accounts(sim, 40)
    flaky = names[:3]
    for name in flaky:  # more 503s than the 3 in-process attempts: the chunk re-queues
        sim.script(name, ["503", "503", "503", "502"])
    status = wait_bulk(submit_bulk(rows_for(names)))
    assert (status.succeeded, status.failed) == (40, 0)
    assert all(sim.account(n)["patches"] == 1 for n in names)
    # 3 PATCHes answered 503 (ambiguous: the re-run reads first), a GET answered 502, a
    # GET, the PATCH.
    assert all(sim.account(n)["requests"] == 6 for n in flaky)
    assert all(sim.account(n)["requests"] == 1 for n in names[3:])


def test_rows_failing_after_every_requeue_are_recorded(sim: stack.SimulatorControl) -> None:
    names = make_accounts(sim, 5)
    sim.script(names[0], ["503"] * 50)
    status = wait_bulk(submit_bulk(rows_for(names)))
    assert (status.succeeded, status.failed) == (4, 1)
    (failure,) = bulk_failures_of(status.bulk_id)
    assert failure["account"] == names[0]
    assert failure["reason"].startswith("ServerError: HTTP 503")


def bulk_failures_of(bulk_id: str) -> list[dict[str, Any]]:
    return list(bulk_failures(bulk_id))


def test_429_waits_retry_after_without_spending_attempts(sim: stack.SimulatorControl) -> None:
    (name,) = make_accounts(sim, 1)
    # Three 429s with VOICEMAIL_RETRY_ATTEMPTS=3: had they counted, the row would re-queue.
    sim.script(name, ["429:1", "429:1", "429:1"])
    started = time.monotonic()
    status = wait_bulk(submit_bulk(rows_for([name])))
    assert (status.succeeded, status.failed) == (1, 0)
    account = sim.account(name)
    assert account["requests"] == 4
    gaps = [b - a for a, b in zip(account["times"], account["times"][1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps
    assert time.monotonic() - started >= 3


def test_bulk_status_of_unknown_id() -> None:
    assert bulk_status("no-such-bulk").state == "UNKNOWN"
    code, out, _ = run("bulk", "status", "no-such-bulk")
    assert code == 1 and json.loads(out)["state"] == "UNKNOWN"


def test_shared_rate_limit_across_two_workers(log_dir: Path, redis_url: str) -> None:
    """VOICEMAIL_RATE_LIMIT=40 over two worker processes: no second at the API sees more than 44."""
    own_redis = stack.start_redis(log_dir)  # a Redis of its own: no other worker helps out
    db_url = own_redis.url
    sim_service = stack.start_simulator(log_dir, generate=240)
    env = {
        **worker_env(sim_service.url),
        "REDIS_URL": db_url,
        "VOICEMAIL_RATE_LIMIT": "40",
        "VOICEMAIL_BULK_CHUNK_SIZE": "20",
    }
    workers = []
    try:
        workers = [stack.start_worker(log_dir, env, name=f"rl{i}", concurrency=4) for i in range(2)]
        accounts = "account,token\n" + "".join(
            f"acct-{i:06d},tok-acct-{i:06d}\n" for i in range(1, 241)
        )
        code, _, err = voicemail(env, "accounts", "import", "-", stdin=accounts)
        assert code == 0, err
        rows = "account,send,email\n" + "".join(
            f"acct-{i:06d},true,a{i}@rl.example.com\n" for i in range(1, 241)
        )
        _, summary, err = voicemail(
            env, "bulk", "submit", "-", "--wait", "--timeout", "60", stdin=rows
        )
        assert (summary["state"], summary["succeeded"]) == ("DONE", 240), err
        control = stack.SimulatorControl(sim_service.url)
        stats = control.stats()
        control.close()
        per_second = stats["per_second"]
        assert stats["total"] == 240
        print("requests per second at the simulator:", per_second)
        assert max(per_second.values()) <= 44, per_second
        # Both workers took chunks.
        assert all("bulk_chunk" in w.log() and "succeeded" in w.log() for w in workers)
    finally:
        for service in workers:
            service.stop()
        sim_service.stop()
        own_redis.stop()


@pytest.mark.slow
def test_two_workers_share_one_bulk(isolated: Isolated) -> None:
    names = isolated.import_accounts(1000)
    isolated.env["VOICEMAIL_BULK_CHUNK_SIZE"] = "50"
    workers = [isolated.worker(f"node{i}") for i in (1, 2)]
    rows = "account,send,email\n" + "".join(f"{n},true,{n}@scale.example.com\n" for n in names)
    summary = isolated.cli_json("bulk", "submit", "-", "--wait", "--timeout", "60", input=rows)
    assert (summary["state"], summary["succeeded"]) == ("DONE", 1000)
    chunks = [w.log().count(" chunk ") for w in workers]
    print(f"chunks taken per worker: {chunks}")
    assert all(count > 0 for count in chunks), chunks


def test_every_bulk_command_answers_an_unknown_id_with_one_line_and_exit_1() -> None:
    for command in ("status", "failures", "retry", "cancel", "pause", "resume", "revert"):
        code, _, err = run("bulk", command, "no-such-bulk")
        assert code == 1, command
        assert err.strip().splitlines() == [
            "voicemail: error: no bulk no-such-bulk (never submitted, or expired)"
        ], command


def test_status_json_always_carries_cancelled_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("account,send,email\nnobody-here,true,a@b.ru\n")
    _, out, _ = run("bulk", "submit", str(path))
    _, out, _ = run("bulk", "status", json.loads(out)["bulk_id"])
    status = json.loads(out)
    assert (status["cancelled"], status["unchanged"]) == (0, 0)


def test_wait_names_the_failed_rows_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    rows = [f"ghost-{i:02d},true,g{i}@b.ru" for i in range(25)] + [",true,x@b.ru"]
    path.write_text("account,send,email\n" + "\n".join(rows) + "\n")
    code, out, err = run("bulk", "submit", str(path), "--wait", "--timeout", "30")
    summary = json.loads(out)
    assert code == 1 and summary["failed"] == 26
    named = [line for line in err.splitlines() if line.startswith("line ")]
    assert len(named) == 20
    assert any(line.startswith("line 2: ghost-00: AccountNotFound") for line in named)
    assert any(line.startswith("line 27: -: ") for line in named)  # a row with no account
    assert f"6 more failed rows not shown: voicemail bulk failures {summary['bulk_id']}" in err
