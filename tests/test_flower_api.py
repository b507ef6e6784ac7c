"""Flower's REST API as the HTTP way for non-Python services to enqueue and poll."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from simulator import stack

from .conftest import SimAccount

pytestmark = pytest.mark.integration


def test_enqueue_and_poll_over_http(
    flower: stack.Service, make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    account = make_account()
    auth = tuple(flower.extra["auth"].split(":"))
    with httpx.Client(base_url=flower.url, auth=auth, timeout=10) as http:
        response = http.post(
            "/api/task/async-apply/voicemail.update",
            json={"args": [account.name, True, "http@acme.ru"]},
        )
        assert response.status_code == 200, response.text
        job_id = response.json()["task-id"]
        deadline = time.monotonic() + 30
        while True:
            info = http.get(f"/api/task/info/{job_id}")
            if info.status_code == 200 and info.json().get("state") == "SUCCESS":
                break
            assert time.monotonic() < deadline, info.text
            time.sleep(0.1)
        body = info.json()
        assert body["name"] == "voicemail.update"
        assert account.name in body["args"]
        result = http.get(f"/api/task/result/{job_id}").json()
        assert result["result"] == {"account": account.name, "email": "http@acme.ru", "send": True}
        assert http.get("/api/task/info/" + job_id, auth=("wrong", "creds")).status_code == 401
    assert sim.account(account.name)["email"] == "http@acme.ru"


def test_flower_shows_bulk_chunks_readably(
    flower: stack.Service, make_account: Callable[..., SimAccount]
) -> None:
    from tasks.bulk import bulk_status, submit_bulk

    accounts = [make_account() for _ in range(3)]
    bulk_id = submit_bulk(
        [{"account": a.name, "send": True, "email": "f@acme.ru"} for a in accounts]
    )
    stack.wait_until(lambda: bulk_status(bulk_id).done, 30, "the bulk")
    auth = tuple(flower.extra["auth"].split(":"))

    def chunks() -> dict[str, str]:
        tasks = httpx.get(
            flower.url + "/api/tasks", auth=auth, params={"taskname": "voicemail.bulk_chunk"}
        ).json()
        return {t.get("args") or "": str(t.get("result")) for t in tasks.values()}

    expected = f"3 accounts of bulk {bulk_id} (chunk 0)"
    stack.wait_until(lambda: expected in chunks(), 20, "Flower listing the chunk")
    # The result says what the bulk was doing: RUNNING, or PAUSED / CANCELLED when cut short.
    assert "'bulk_state': 'RUNNING'" in chunks()[expected]


def test_a_failure_reads_the_same_in_flower_the_producer_and_the_cli(
    flower: stack.Service, make_account: Callable[..., SimAccount]
) -> None:
    """One failure shape: `{"type", "message"}` as JSON (producer, `voicemail result`),
    `Type: message` as text (Flower's task page and `/api/task/result`, which print it)."""
    import json

    from click.testing import CliRunner

    from cli import cli
    from tasks import enqueue_get, wait

    job_id = enqueue_get(make_account("missing-200").name)
    status = wait(job_id, timeout=30)
    assert status.error is not None
    shape = {"type": "UserNotFound", "message": "User not found."}
    assert status.as_dict()["error"] == shape
    shown = CliRunner().invoke(cli, ["result", job_id])
    assert shown.exit_code == 1
    assert json.loads(shown.stdout)["error"] == shape
    text = "UserNotFound: User not found."
    assert str(status.error) == text
    auth = tuple(flower.extra["auth"].split(":"))
    with httpx.Client(base_url=flower.url, auth=auth, timeout=10) as http:
        assert http.get(f"/api/task/result/{job_id}").json()["result"] == text
        deadline = time.monotonic() + 15
        while (info := http.get(f"/api/task/info/{job_id}")).status_code != 200 or (
            info.json().get("state") != "FAILURE"
        ):
            assert time.monotonic() < deadline, info.text
            time.sleep(0.1)
        assert info.json()["exception"] == text
        # Where Flower differs (docs/operations.md, "One failure shape"): its task page also
        # shows the traceback the worker's task-failed event carries.


def test_flower_shows_who_asked_for_an_update_and_why(
    flower: stack.Service, make_account: Callable[..., SimAccount]
) -> None:
    """`actor` and `reason` travel as the update's keyword arguments: Flower shows them
    with the task, as it shows `seq`."""
    from tasks import enqueue_update, wait

    account = make_account()
    job_id = enqueue_update(account.name, True, "who@acme.ru", actor="dana@ops", reason="ticket 19")
    assert wait(job_id, timeout=30).ok
    auth = tuple(flower.extra["auth"].split(":"))
    with httpx.Client(base_url=flower.url, auth=auth, timeout=10) as http:
        deadline = time.monotonic() + 15
        while (info := http.get(f"/api/task/info/{job_id}")).status_code != 200 or (
            info.json().get("state") != "SUCCESS"
        ):
            assert time.monotonic() < deadline, info.text
            time.sleep(0.1)
    kwargs = info.json()["kwargs"]
    assert "'actor': 'dana@ops'" in kwargs and "'reason': 'ticket 19'" in kwargs
