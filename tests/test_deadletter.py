"""Dead letters: listed with their reasons, re-driven, never dropped silently."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner

from cli import cli
from simulator import stack
from tasks import enqueue_get, enqueue_update, wait
from worker.queue import deadletter

from .conftest import SimAccount

RedisClient = Any

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
    result = CliRunner().invoke(cli, ["dead", "retry", "--all"])  # UserNotFound: permanent
    assert result.exit_code == 0
    assert lost not in {d["id"] for d in map(json.loads, result.stdout.splitlines())}
    assert "permanent failure(s)" in result.stderr
    result = CliRunner().invoke(cli, ["dead", "retry", "--all", "--include-permanent"])
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


def ping_letter(error_type: str, age_days: float = 0) -> deadletter.DeadLetter:
    """A dead `voicemail.ping` (re-driving it is harmless) that failed `age_days` ago."""
    return deadletter.DeadLetter(
        id=str(uuid.uuid4()),
        task="voicemail.ping",
        args=[],
        kwargs={},
        error={"type": error_type, "message": "m", "reason": f"{error_type}: m"},
        failed_at=time.time() - age_days * 86_400,
    )


@pytest.mark.parametrize(
    ("error_type", "permanent"),
    [
        ("InputError", True),
        ("AccountNotFound", True),
        ("CredentialError", True),
        ("UserNotFound", True),
        ("AuthError", True),
        ("Expired", True),
        ("ServerError", False),
        ("ApiTimeout", False),
        ("RuntimeError", False),
    ],
)
def test_permanent_failures_are_the_tasks_throws(error_type: str, permanent: bool) -> None:
    assert ping_letter(error_type).permanent is permanent


def test_retry_all_skips_permanent_failures(redis_client: RedisClient) -> None:
    permanent, transient = ping_letter("AccountNotFound"), ping_letter("ServerError")
    for letter in (permanent, transient):
        deadletter.record(redis_client, letter)
    result = CliRunner().invoke(cli, ["dead", "retry", "--all"])
    assert result.exit_code == 0, result.output
    sent = {d["id"] for d in map(json.loads, result.stdout.splitlines())}
    assert transient.id in sent
    assert permanent.id not in sent
    assert permanent.id in dead_ids()
    result = CliRunner().invoke(cli, ["dead", "retry", "--all", "--include-permanent"])
    assert permanent.id in {d["id"] for d in map(json.loads, result.stdout.splitlines())}
    assert CliRunner().invoke(cli, ["dead", "retry", "x", "--include-permanent"]).exit_code == 2


def test_purge_by_age_and_all(redis_client: RedisClient) -> None:
    old, recent = ping_letter("ServerError", age_days=8), ping_letter("ServerError", 0.1)
    for letter in (old, recent):
        deadletter.record(redis_client, letter)
    result = CliRunner().invoke(cli, ["dead", "purge", "--older-than", "7d"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["purged"] >= 1
    assert old.id not in dead_ids()
    assert recent.id in dead_ids()
    assert CliRunner().invoke(cli, ["dead", "purge", "--older-than", "12h"]).exit_code == 0
    assert recent.id in dead_ids()  # 2.4 hours old
    assert CliRunner().invoke(cli, ["dead", "purge", "--older-than", "soon"]).exit_code == 2
    result = CliRunner().invoke(cli, ["dead", "purge"])
    assert result.exit_code == 0
    assert dead_ids() == {}


def test_letters_past_retention_are_dropped_on_write(redis_client: RedisClient) -> None:
    stale, fresh = ping_letter("ServerError", age_days=31), ping_letter("ServerError", 29)
    deadletter.record(redis_client, stale)
    deadletter.record(redis_client, fresh, keep_days=30)
    assert deadletter.get(redis_client, stale.id) is None
    assert deadletter.get(redis_client, fresh.id) is not None
    deadletter.forget(redis_client, fresh.id)


def test_dead_list_shows_failed_at_in_utc() -> None:
    shown = ping_letter("ServerError").as_dict()["failed_at"]
    assert shown.endswith("Z")
    assert datetime.fromisoformat(shown).utcoffset() is not None
