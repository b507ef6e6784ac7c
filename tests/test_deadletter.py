"""Dead letters: listed with their reasons, re-driven, never dropped silently."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from cli import cli
from simulator import stack
from tasks import enqueue_get, enqueue_update, wait

from .conftest import SimAccount

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def dead_ids() -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(cli, ["dead", "list"])
    assert result.exit_code == 0, result.output
    return {d["id"]: d for d in map(json.loads, result.stdout.splitlines())}


def test_failed_jobs_are_listed_and_redriven(
    make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    missing = make_account("missing-200")
    flaky = make_account()
    sim.script(flaky.name, ["503"] * 9)  # every attempt of every re-queue
    lost = enqueue_get(missing.name)
    outage = enqueue_update(flaky.name, True, "back@acme.ru")
    assert wait(lost, timeout=20).state == "FAILURE"
    assert wait(outage, timeout=30).state == "FAILURE"

    listed = dead_ids()
    assert listed[lost]["error"] == {
        "type": "UserNotFound",
        "message": "User not found.",
        "reason": "UserNotFound: User not found.",
    }
    assert listed[lost]["task"] == "voicemail.get"
    assert listed[outage]["error"]["type"] == "ServerError"  # type: ignore[index]
    assert listed[outage]["retries"] == 2

    # The API recovers; re-drive the outage job only.
    result = CliRunner().invoke(cli, ["dead", "retry", outage])
    new_id = json.loads(result.stdout)["new_id"]
    status = wait(new_id, timeout=20)
    assert status.ok, status
    assert sim.account(flaky.name)["email"] == "back@acme.ru"
    listed = dead_ids()
    assert outage not in listed
    assert lost in listed

    sim.add_accounts([{"account": missing.name, "token": missing.token}])
    result = CliRunner().invoke(cli, ["dead", "retry", "--all"])
    assert result.exit_code == 0
    assert lost not in dead_ids()
    redriven = {d["id"]: d["new_id"] for d in map(json.loads, result.stdout.splitlines())}
    assert wait(redriven[lost], timeout=20).ok  # other tests' dead jobs were re-driven too


def test_retry_needs_an_id_or_all() -> None:
    result = CliRunner().invoke(cli, ["dead", "retry"])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["dead", "retry", "no-such-job"])
    assert result.exit_code == 1  # an unknown id, as for `voicemail result`
    assert "no dead job no-such-job" in result.stderr
