"""`bulk verify`, `bulk plan` and `bulk apply` through the CLI, a real worker and the
simulator: what they print, what they send (the simulator counts), what they refuse."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from simulator import stack
from tasks.bulk import bulk_failures
from tasks.producer import credential_store

from .conftest import ISSUED_TOKENS, voicemail
from .test_bulk import make_accounts, run

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def csv_file(tmp_path: Path, rows: list[str], name: str = "rows.csv") -> Path:
    path = tmp_path / name
    path.write_text("account,send,email\n" + "".join(row + "\n" for row in rows))
    return path


def target(name: str) -> str:
    return f"{name},true,{name}@want.example.com"


def stored_only(count: int) -> list[str]:
    """Accounts in the credential store that the vendor (the simulator) does not know."""
    names = [f"ghost-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
    for name in names:
        ISSUED_TOKENS.append(f"tok-{name}")
        credential_store().put(name, f"tok-{name}")
    return names


def named_rows(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("line ")]


# -- bulk verify ------------------------------------------------------------------------


def test_verify_names_the_drifted_accounts_and_fix_puts_them_back(
    sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    names = make_accounts(sim, 30)
    path = csv_file(tmp_path, [target(n) for n in names])
    code, out, err = run("bulk", "submit", str(path), "--wait", "--timeout", "60")
    assert code == 0, err
    drifted = names[3:10]
    for name in drifted:  # changed behind the bulk's back
        sim.set_values(name, send=False, email=f"{name}@by-hand.example.com")

    code, out, err = run("bulk", "verify", str(path), "--timeout", "60")
    summary = json.loads(out)
    assert code == 3, err
    assert {k: v for k, v in summary.items() if k != "bulk_id"} == {
        "checked": 30,
        "matching": 23,
        "drifted": 7,
        "unreachable": 0,
        "invalid": 0,
    }
    assert sorted(named_rows(err)) == sorted(
        f"line {names.index(n) + 2}: {n}: vendor has send=false, email={n}@by-hand.example.com"
        for n in drifted
    )
    assert all(sim.account(n)["patches"] == 1 for n in names)  # verify sent no PATCH
    assert all(sim.account(n)["requests"] == 2 for n in names)  # the PATCH, then one GET

    code, out, err = run("bulk", "verify", str(path), "--fix", "--timeout", "60")
    fixed = json.loads(out)
    assert code == 3 and fixed["drifted"] == 7 and fixed["fix_bulk_id"], err
    for name in drifted:
        account = sim.account(name)
        assert (account["send"], account["email"]) == (True, f"{name}@want.example.com")
        assert account["patches"] == 2
    assert all(sim.account(n)["patches"] == 1 for n in names if n not in drifted)

    # The real executable, as another host runs it.
    code, summary, err = voicemail(dict(os.environ), "bulk", "verify", str(path))
    assert code == 0, err
    assert summary["matching"] == 30 and named_rows(err) == []


def test_verify_counts_unreachable_and_invalid_rows(
    sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    good = make_accounts(sim, 3, send=True, email="same@acme.ru")
    (missing,) = make_accounts(sim, 1, mode="missing-200")
    (ghost,) = stored_only(1)
    rows = [f"{n},true,same@acme.ru" for n in [*good, missing, ghost]]
    rows += ["never-imported,true,x@acme.ru", f"{good[0]},true,same@acme.ru", f"{good[1]},true,bad"]
    code, out, err = run("bulk", "verify", str(csv_file(tmp_path, rows)), "--timeout", "60")
    summary = json.loads(out)
    assert code == 3, err
    assert {k: v for k, v in summary.items() if k != "bulk_id"} == {
        "checked": 8,
        "matching": 3,
        "drifted": 0,
        "unreachable": 2,
        "invalid": 3,
    }
    named = named_rows(err)
    assert f"line 5: {missing}: UserNotFound: User not found." in named
    assert any(line.startswith("line 7: never-imported: AccountNotFound") for line in named)
    assert any("already given on line 2" in line for line in named)
    assert all(sim.account(n)["patches"] == 0 for n in [*good, missing])


def test_verify_of_a_file_that_cannot_be_read_fails_as_submit_does(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("who,what\nx,y\n")
    for path in (missing, str(bad_header)):
        submitted = run("bulk", "submit", path)
        verified = run("bulk", "verify", path)
        planned = run("bulk", "plan", path)
        assert submitted[0] == verified[0] == planned[0] == 2
        assert submitted[2] == verified[2] == planned[2]
        assert submitted[2].startswith("voicemail: error: ")


# -- bulk plan and bulk apply ------------------------------------------------------------


def make_plan(sim: stack.SimulatorControl, tmp_path: Path) -> dict[str, Any]:
    """A file of 6 rows to change, 3 already there, 1 the vendor does not know and 2
    invalid ones; its plan and --out rows."""
    change = make_accounts(sim, 6, send=False, email="old@acme.ru")
    same = make_accounts(sim, 3, send=True, email="new@acme.ru")
    (unknown,) = stored_only(1)
    rows = [f"{n},true,new@acme.ru" for n in [*change, *same, unknown]]
    rows += [f"{change[0]}x,true,not-an-email", f"{same[0]},maybe,new@acme.ru"]
    path = csv_file(tmp_path, rows)
    out_path = tmp_path / "plan.jsonl"
    code, out, err = run("bulk", "plan", str(path), "--out", str(out_path), "--timeout", "60")
    assert code == 0, err
    plan_rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    return {
        "change": change,
        "same": same,
        "unknown": unknown,
        "summary": json.loads(out),
        "rows": {row["line"]: row for row in plan_rows},
    }


def test_plan_counts_and_out_rows(sim: stack.SimulatorControl, tmp_path: Path) -> None:
    plan = make_plan(sim, tmp_path)
    summary, rows = plan["summary"], plan["rows"]
    assert {k: summary[k] for k in ("total", "change", "unchanged", "unreachable", "invalid")} == {
        "total": 12,
        "change": 6,
        "unchanged": 3,
        "unreachable": 1,
        "invalid": 2,
    }
    assert isinstance(summary["estimate_seconds"], float) and summary["estimate_seconds"] > 0
    assert sorted(rows) == list(range(2, 14))
    first = plan["change"][0]
    assert rows[2] == {
        "line": 2,
        "account": first,
        "action": "change",
        "before": {"send": False, "email": "old@acme.ru"},
        "after": {"send": True, "email": "new@acme.ru"},
    }
    unchanged = rows[8]
    assert (unchanged["account"], unchanged["action"]) == (plan["same"][0], "unchanged")
    assert unchanged["before"] == unchanged["after"] == {"send": True, "email": "new@acme.ru"}
    assert unchanged["reason"]
    unknown = rows[11]
    assert (unknown["account"], unknown["action"], unknown["before"]) == (
        plan["unknown"],
        "unreachable",
        None,
    )
    assert unknown["after"] == {"send": True, "email": "new@acme.ru"}
    assert unknown["reason"].startswith("AuthError")
    invalid = rows[12]
    assert (invalid["action"], invalid["before"]) == ("invalid", None)
    assert invalid["after"] == {"send": True, "email": "not-an-email"}
    assert "email" in invalid["reason"]
    assert rows[13]["action"] == "invalid" and "send must be true or false" in rows[13]["reason"]
    for name in plan["change"] + plan["same"]:  # one GET each, no PATCH
        assert (sim.account(name)["requests"], sim.account(name)["patches"]) == (1, 0)


def test_apply_sends_the_change_rows_skips_stale_ones_and_runs_once(
    sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    plan = make_plan(sim, tmp_path)
    plan_id = plan["summary"]["plan_id"]
    stale = plan["change"][-1]
    sim.set_values(stale, email="by-hand@acme.ru")  # between the plan and its apply

    code, out, err = run("bulk", "apply", plan_id, "--wait", "--timeout", "60")
    summary = json.loads(out)
    assert code == 1, err  # a stale row is a failed one
    assert summary["plan_id"] == plan_id
    assert {k: summary[k] for k in ("state", "total", "succeeded", "failed", "stale")} == {
        "state": "DONE",
        "total": 6,
        "succeeded": 5,
        "failed": 1,
        "stale": 1,
    }
    (failure,) = bulk_failures(summary["bulk_id"])
    assert failure["account"] == stale
    assert failure["reason"].startswith("Stale: the account holds send=false, email=by-hand@")
    assert f"line 7: {stale}: Stale: " in err
    for name in plan["change"][:-1]:
        account = sim.account(name)
        assert (account["patches"], account["send"], account["email"]) == (
            1,
            True,
            "new@acme.ru",
        )
    assert sim.account(stale)["patches"] == 0
    assert all(sim.account(n)["patches"] == 0 for n in plan["same"])
    status = json.loads(run("bulk", "status", summary["bulk_id"])[1])
    assert status["stale"] == 1

    code, out, err = run("bulk", "apply", plan_id)
    assert code == 2
    assert summary["bulk_id"] in err and plan_id in err
    assert err.strip().count("\n") == 0


def test_apply_without_wait_prints_ids(sim: stack.SimulatorControl, tmp_path: Path) -> None:
    names = make_accounts(sim, 2)
    path = csv_file(tmp_path, [target(n) for n in names])
    _, out, _ = run("bulk", "plan", str(path), "--timeout", "60")
    plan_id = json.loads(out)["plan_id"]
    code, out, err = run("bulk", "apply", plan_id)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["plan_id"] == plan_id and set(printed) == {"bulk_id", "plan_id"}
    deadline = time.monotonic() + 30
    while any(sim.account(n)["patches"] == 0 for n in names) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(sim.account(n)["patches"] == 1 for n in names)


def test_an_expired_or_unknown_plan_exits_1(sim: stack.SimulatorControl, tmp_path: Path) -> None:
    names = make_accounts(sim, 2)
    path = csv_file(tmp_path, [target(n) for n in names])
    env = {**os.environ, "VOICEMAIL_PLAN_TTL": "1"}
    code, summary, err = voicemail(env, "bulk", "plan", str(path), "--timeout", "60")
    assert code == 0 and summary["change"] == 2, err
    time.sleep(2.5)
    code, _, err = voicemail(env, "bulk", "apply", summary["plan_id"])
    assert code == 1
    assert err.strip() == (
        f"voicemail: error: no bulk {summary['plan_id']} (never submitted, or expired)"
    )
    assert all(sim.account(n)["patches"] == 0 for n in names)
    code, _, err = run("bulk", "apply", "no-such-plan")
    assert code == 1 and "no bulk no-such-plan" in err


def test_a_bulk_that_is_not_a_plan_is_refused(tmp_path: Path) -> None:
    path = csv_file(tmp_path, ["nobody-here,true,a@b.ru"])
    bulk_id = json.loads(run("bulk", "submit", str(path))[1])["bulk_id"]
    code, _, err = run("bulk", "apply", bulk_id)
    assert code == 2 and "is not a plan" in err


def test_every_status_carries_stale(tmp_path: Path) -> None:
    path = csv_file(tmp_path, ["nobody-here,true,a@b.ru"])
    bulk_id = json.loads(run("bulk", "submit", str(path))[1])["bulk_id"]
    assert json.loads(run("bulk", "status", bulk_id)[1])["stale"] == 0
