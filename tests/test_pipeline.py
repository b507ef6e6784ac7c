"""enqueue -> Redis -> a real worker process -> the simulator over a socket -> poll."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery

from simulator import stack
from tasks import enqueue_get, enqueue_update, poll, wait
from worker.core import constants as C
from worker.core import keys
from worker.core.errors import AccountNotFound, InputError

from .conftest import SimAccount

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

MakeAccount = Callable[..., SimAccount]


def job_markers(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(keys.JOB_PREFIX + "*"))


def test_update_then_get(make_account: MakeAccount, sim: stack.SimulatorControl) -> None:
    account = make_account()
    status = wait(enqueue_update(account.name, True, "vm@acme.ru"), timeout=20)
    assert status.state == "SUCCESS", status
    assert status.result == {"account": account.name, "email": "vm@acme.ru", "send": True}
    assert sim.account(account.name)["email"] == "vm@acme.ru"

    status = wait(enqueue_get(account.name), timeout=20)
    assert status.result == {"account": account.name, "email": "vm@acme.ru", "send": True}
    assert sim.account(account.name)["headers"]["Client"] == "10553"


def test_two_502s_are_retried_to_success(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    sim.script(account.name, ["502", "502"])
    status = wait(enqueue_update(account.name, False, "after@acme.ru"), timeout=20)
    assert status.state == "SUCCESS", status
    assert sim.account(account.name)["requests"] == 3
    assert sim.account(account.name)["patches"] == 1


@pytest.mark.parametrize("mode", ["missing-200", "missing-500"])
def test_user_not_found_fails_after_one_request(
    make_account: MakeAccount, sim: stack.SimulatorControl, mode: str
) -> None:
    account = make_account(mode)
    status = wait(enqueue_get(account.name), timeout=20)
    assert status.state == "FAILURE"
    assert status.error is not None
    assert str(status.error) == "UserNotFound: User not found."
    assert sim.account(account.name)["requests"] == 1


def test_401_fails_as_auth_error(make_account: MakeAccount) -> None:
    account = make_account(in_api=False)  # imported, but the API does not know the token
    status = wait(enqueue_get(account.name), timeout=20)
    assert status.state == "FAILURE"
    assert status.error is not None and status.error.type == "AuthError"


def test_422_fails_with_field_errors(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    sim.script(account.name, ["422"])
    status = wait(enqueue_update(account.name, True, "ok@acme.ru"), timeout=20)
    assert status.error is not None and status.error.type == "ValidationError"
    assert "email" in status.error.message
    assert sim.account(account.name)["requests"] == 1


def test_bad_email_is_refused_before_enqueue(
    make_account: MakeAccount, redis_client: redis.Redis
) -> None:
    account = make_account()
    before = job_markers(redis_client)
    with pytest.raises(InputError, match="email"):
        enqueue_update(account.name, True, "not-an-email")
    with pytest.raises(InputError, match="send must be true or false"):
        enqueue_update(account.name, "yes", "a@b.ru")  # type: ignore[arg-type]
    assert job_markers(redis_client) == before


def test_account_never_imported_is_refused(
    make_account: MakeAccount, redis_client: redis.Redis
) -> None:
    account = make_account(imported=False)
    before = job_markers(redis_client)
    with pytest.raises(AccountNotFound, match=account.name):
        enqueue_get(account.name)
    assert job_markers(redis_client) == before


def test_send_task_by_name_from_another_service(
    foreign_app: Celery, make_account: MakeAccount
) -> None:
    account = make_account()
    result = foreign_app.send_task("voicemail.update", args=[account.name, True, "x@acme.ru"])
    assert result.get(timeout=20) == {"account": account.name, "email": "x@acme.ru", "send": True}
    assert poll(result.id).state == "SUCCESS"


def test_worker_checks_input_sent_by_name(foreign_app: Celery, make_account: MakeAccount) -> None:
    account = make_account()
    bad: list[list[Any]] = [
        [account.name, "true", "x@acme.ru"],
        [account.name, True, "nope"],
        [123, True, "x@acme.ru"],
        ["never-imported-account", True, "x@acme.ru"],
    ]
    expected = ["InputError", "InputError", "InputError", "AccountNotFound"]
    results = [foreign_app.send_task("voicemail.update", args=args) for args in bad]
    got = [wait(r.id, timeout=20) for r in results]
    assert [s.error.type if s.error else s.state for s in got] == expected


def test_ping_by_name(foreign_app: Celery) -> None:
    assert foreign_app.send_task("voicemail.ping").get(timeout=20) == "pong"


def test_wrong_arguments_sent_by_name_are_input_errors_naming_them(
    foreign_app: Celery, make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    cases: list[tuple[str, list[Any], dict[str, Any], str]] = [
        ("voicemail.update", [account.name], {}, "missing a required argument: 'send'"),
        ("voicemail.update", [account.name, True, "x@acme.ru", 99], {}, "too many positional"),
        ("voicemail.update", [account.name, True, "x@acme.ru", 99, 1], {}, "too many positional"),
        ("voicemail.update", [account.name, True, "x@acme.ru"], {"colour": 1}, "'colour'"),
        ("voicemail.get", [], {}, "missing a required argument: 'account'"),
        ("voicemail.get", [account.name, True], {}, "too many positional"),
        ("voicemail.ping", ["hello"], {}, "too many positional"),
    ]
    results = [foreign_app.send_task(name, args=a, kwargs=k) for name, a, k, _ in cases]
    for result, (name, _, _, says) in zip(results, cases, strict=True):
        status = wait(result.id, timeout=20)
        assert status.state == "FAILURE" and status.error is not None, (name, status)
        assert status.error.type == "InputError", (name, status.error)
        assert says in status.error.message and name in status.error.message
        assert poll(result.id).state == "FAILURE"  # at once, never retried
    # A number never handed out is refused too: it would make later updates look old.
    made_up = foreign_app.send_task(
        "voicemail.update", args=[account.name, True, "x@acme.ru"], kwargs={"seq": 9 * 10**15}
    )
    status = wait(made_up.id, timeout=20)
    assert status.error is not None and status.error.type == "InputError"
    assert "never issued" in status.error.message
    assert sim.account(account.name)["requests"] == 0


def test_outage_is_requeued_then_succeeds(
    make_account: MakeAccount, sim: stack.SimulatorControl
) -> None:
    account = make_account()
    # 3 in-process attempts fail, the task re-queues itself. A 503 without the API's JSON
    # may have been applied behind the gateway: the redelivery reads first (its first GET
    # meets the 4th 503, its second answers), then sends: 6 requests, one PATCH applied.
    sim.script(account.name, ["503", "503", "503", "503"])
    job = enqueue_update(account.name, True, "back@acme.ru")
    status = wait(job, timeout=30)
    assert status.state == "SUCCESS", status
    assert sim.account(account.name)["requests"] == 6
    assert sim.account(account.name)["patches"] == 1


def test_retries_are_bounded(make_account: MakeAccount, sim: stack.SimulatorControl) -> None:
    account = make_account()
    sim.script(account.name, ["503"] * 20)
    status = wait(enqueue_get(account.name), timeout=30)
    assert status.state == "FAILURE"
    assert status.error is not None and status.error.type == "ServerError"
    # 3 attempts per run, the first run plus VOICEMAIL_REQUEUE_MAX=2 re-queues.
    assert sim.account(account.name)["requests"] == 9


def test_unknown_job_id_is_reported_unknown() -> None:
    status = poll("00000000-0000-0000-0000-000000000000")
    assert status.state == "UNKNOWN" and status.ready
    assert wait("00000000-0000-0000-0000-000000000000", timeout=5).state == "UNKNOWN"


def test_result_has_a_ttl(make_account: MakeAccount, redis_client: redis.Redis) -> None:
    account = make_account()
    job = enqueue_get(account.name)
    assert wait(job, timeout=20).ok
    ttl = redis_client.ttl(f"celery-task-meta-{job}")
    assert 0 < ttl <= C.DEFAULT_RESULT_EXPIRES


def test_pickle_message_is_refused(
    foreign_app: Celery,
    make_account: MakeAccount,
    sim: stack.SimulatorControl,
    worker: stack.Service,
) -> None:
    account = make_account()
    job = foreign_app.send_task("voicemail.get", args=[account.name], serializer="pickle")
    # A JSON job sent after it is processed; by then the pickle one was seen and refused.
    assert wait(enqueue_get(account.name), timeout=20).ok
    stack.wait_until(
        lambda: "ContentDisallowed" in worker.log() or "Refusing" in worker.log(),
        10,
        "the worker logging the refused message",
    )
    assert poll(job.id).state in ("PENDING", "UNKNOWN")
    assert sim.account(account.name)["requests"] == 1
