"""The HTTP API (httpapi) served by uvicorn on a socket, against a real worker and Redis.

httpx makes most calls; curl, a client that is none of our code, makes one enqueue and
poll against `voicemail serve` run as operators run it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi import FastAPI
from openapi_spec_validator import validate

from httpapi import keystore
from httpapi.app import create_app
from simulator import stack
from tasks.bulk import bulk_status, list_bulks, pause_bulk, submit_bulk

from .conftest import SimAccount

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]
MakeAccount = Callable[..., SimAccount]
MakeKey = Callable[..., str]
PROBLEM = "application/problem+json"


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn in a thread, on a free port; its base URL."""
    port = stack.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stack.wait_until(lambda: server.started, 30, "uvicorn")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def api(worker: stack.Service) -> Iterator[str]:
    with serving(create_app()) as url:
        yield url


@pytest.fixture
def make_key(redis_client: redis.Redis) -> MakeKey:
    """A new API key for a service of its own, allowed the accounts matching `accounts`."""

    def make(accounts: str = "*", name: str | None = None) -> str:
        return keystore.add(redis_client, name or f"svc-{uuid.uuid4().hex[:8]}", accounts)

    return make


def client(api: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=api, headers=headers, timeout=30)


def is_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = dict(response.json())
    assert body["type"] == type_ and body["status"] == status, body
    assert body["title"] and body["detail"]
    return body


def settle(http: httpx.Client, bulk_id: str) -> None:
    stack.wait_until(
        lambda: http.get(f"/v1/bulks/{bulk_id}").json()["state"] == "DONE", 30, "the bulk"
    )


def test_update_then_read(api: str, make_account: MakeAccount, make_key: MakeKey) -> None:
    account = make_account()
    with client(api, make_key()) as http:
        posted = http.post(
            f"/v1/accounts/{account.name}/updates", json={"send": True, "email": "h@acme.ru"}
        )
        assert posted.status_code == 202, posted.text
        job_id = posted.json()["id"]
        assert posted.headers["location"] == f"/v1/jobs/{job_id}"
        done = http.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
        want = {"account": account.name, "send": True, "email": "h@acme.ru"}
        assert done == {"id": job_id, "state": "SUCCESS", "result": want, "error": None}

        read = http.post(f"/v1/accounts/{account.name}/reads")
        assert read.status_code == 202
        status = http.get(f"/v1/jobs/{read.json()['id']}", params={"wait": 20}).json()
        assert status["result"] == want


def test_a_failed_job_carries_its_error(
    api: str, make_account: MakeAccount, make_key: MakeKey
) -> None:
    account = make_account("missing-200")
    with client(api, make_key()) as http:
        job_id = http.post(f"/v1/accounts/{account.name}/reads").json()["id"]
        status = http.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
    assert status["state"] == "FAILURE" and status["result"] is None
    assert status["error"] == {"type": "UserNotFound", "message": "User not found."}


def test_no_key_a_wrong_key_or_a_revoked_key_is_401(
    api: str, make_account: MakeAccount, redis_client: redis.Redis
) -> None:
    account = make_account()
    path = f"/v1/accounts/{account.name}/reads"
    key = keystore.add(redis_client, "svc-revoked", "*")
    keystore.revoke(redis_client, "svc-revoked")
    for given in (None, "vmk_not-a-key", "not-even-ours", key):
        with client(api, given) as http:
            body = is_problem(http.post(path), 401, "Unauthorized")
            assert http.post(path).headers["www-authenticate"].startswith("Bearer")
            assert given is None or given not in json.dumps(body)


def test_an_account_outside_the_glob_is_403_and_others_jobs_are_404(
    api: str, make_account: MakeAccount, make_key: MakeKey
) -> None:
    account = make_account()
    narrow = make_key("acme-*")
    with client(api, narrow) as http:
        body = is_problem(http.post(f"/v1/accounts/{account.name}/reads"), 403, "Forbidden")
        assert account.name in body["detail"]
        update = {"send": True, "email": "x@acme.ru"}
        is_problem(http.post(f"/v1/accounts/{account.name}/updates", json=update), 403, "Forbidden")
    with client(api, make_key(account.name)) as owner:
        job_id = owner.post(f"/v1/accounts/{account.name}/reads").json()["id"]
        assert owner.get(f"/v1/jobs/{job_id}").status_code == 200
    with client(api, narrow) as http:  # another service's job: as if it never was
        is_problem(http.get(f"/v1/jobs/{job_id}"), 404, "UnknownJob")
    with client(api, make_key("*")) as operator:
        assert operator.get(f"/v1/jobs/{job_id}").status_code == 200


def test_errors_are_problem_json_named_as_in_python(
    api: str, make_account: MakeAccount, make_key: MakeKey
) -> None:
    account = make_account()
    updates = f"/v1/accounts/{account.name}/updates"
    with client(api, make_key()) as http:
        bad_email = http.post(updates, json={"send": True, "email": "not an email"})
        assert "email" in is_problem(bad_email, 422, "InputError")["detail"]
        missing = http.post(
            "/v1/accounts/acct-nobody/updates", json={"send": True, "email": "a@b.ru"}
        )
        is_problem(missing, 404, "AccountNotFound")
        is_problem(http.post("/v1/accounts/acct-nobody/reads"), 404, "AccountNotFound")
        # FastAPI's own validation: "true" is not a boolean, an unknown field, no body.
        for body in (
            {"send": "true", "email": "a@b.ru"},
            {"send": True, "email": "a@b.ru", "x": 1},
        ):
            problem = is_problem(http.post(updates, json=body), 422, "InputError")
            assert problem["errors"] and problem["errors"][0]["loc"][0] == "body"
        is_problem(http.post(updates), 422, "InputError")
        is_problem(http.get("/v1/jobs/no-such-job"), 404, "UnknownJob")
        is_problem(http.get("/v1/jobs/x", params={"wait": 99}), 422, "InputError")
        is_problem(http.get("/v1/nowhere"), 404, "NotFound")
        is_problem(http.delete("/v1/jobs/x"), 405, "MethodNotAllowed")
        is_problem(http.get("/v1/bulks/no-such-bulk"), 404, "UnknownBulk")
        csv_as_json = http.post("/v1/bulks", content=b"{}", headers={"content-type": "image/png"})
        is_problem(csv_as_json, 415, "UnsupportedMediaType")


def test_an_unreachable_redis_is_503_queue_unavailable() -> None:
    app = create_app()
    app.state.redis = redis.Redis(port=stack.free_port())  # nothing listens there
    with serving(app) as url:
        response = httpx.get(url + "/v1/jobs/x", headers={"Authorization": "Bearer vmk_any"})
    assert is_problem(response, 503, "QueueUnavailable")["detail"].startswith("cannot reach")
    assert response.headers["retry-after"] == "1"


def test_a_bulk_without_the_csv_header_is_422(api: str, make_key: MakeKey) -> None:
    with client(api, make_key()) as http:
        response = http.post(
            "/v1/bulks", content="a,b\n1,2\n", headers={"content-type": "text/csv"}
        )
    assert "account,send,email" in is_problem(response, 422, "InputError")["detail"]


def test_idempotency_key_answers_the_first_job_per_api_key(
    api: str, make_account: MakeAccount, make_key: MakeKey, redis_client: redis.Redis
) -> None:
    account = make_account()
    path = f"/v1/accounts/{account.name}/updates"
    body = {"send": False, "email": "idem@acme.ru"}
    order = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:6]}"}
    with client(api, make_key()) as http:
        first = http.post(path, json=body, headers=order).json()["id"]
        again = http.post(path, json={**body, "email": "other@acme.ru"}, headers=order).json()["id"]
        assert again == first
        assert http.get(f"/v1/jobs/{first}", params={"wait": 20}).json()["state"] == "SUCCESS"
        is_problem(http.post(path, json=body, headers={"Idempotency-Key": ""}), 422, "InputError")
    with client(api, make_key()) as other_service:  # the same key string, another caller
        assert other_service.post(path, json=body, headers=order).json()["id"] != first


def test_a_bulk_of_csv_then_jsonl(api: str, make_account: MakeAccount, make_key: MakeKey) -> None:
    good, outside = make_account(), make_account()
    key = make_key(good.name)  # a glob that is one name
    rows = f"account,send,email\n{good.name},true,b@acme.ru\n{outside.name},true,o@acme.ru\n"
    rows += f"{good.name}x,maybe,b@acme.ru\n"
    with client(api, key) as http:
        posted = http.post("/v1/bulks", content=rows, headers={"content-type": "text/csv"})
        assert posted.status_code == 202, posted.text
        bulk_id = posted.json()["bulk_id"]
        stack.wait_until(
            lambda: http.get(f"/v1/bulks/{bulk_id}").json()["state"] == "DONE", 30, "bulk"
        )
        status = http.get(f"/v1/bulks/{bulk_id}").json()
        assert (status["total"], status["succeeded"], status["failed"]) == (3, 1, 2)
        failures = http.get(f"/v1/bulks/{bulk_id}/failures").json()
        reasons = {f["line"]: f["reason"] for f in failures}
        assert reasons[3].startswith("Forbidden:") and "send must be" in reasons[4]
        assert (
            http.get(f"/v1/bulks/{bulk_id}/failures", params={"offset": 1}).json() == failures[1:]
        )

        line = json.dumps({"account": good.name, "send": False, "email": "j@acme.ru"})
        jsonl = http.post(
            "/v1/bulks", content=line + "\n", headers={"content-type": "application/x-ndjson"}
        )
        bulk_id = jsonl.json()["bulk_id"]
        stack.wait_until(
            lambda: http.get(f"/v1/bulks/{bulk_id}").json()["state"] == "DONE", 30, "bulk"
        )
        assert http.get(f"/v1/bulks/{bulk_id}").json()["succeeded"] == 1
    with client(api, make_key(good.name)) as stranger:  # the same glob, not its bulk
        is_problem(stranger.get(f"/v1/bulks/{bulk_id}"), 404, "UnknownBulk")


def test_pause_resume_and_cancel_a_bulk(
    api: str, make_account: MakeAccount, make_key: MakeKey
) -> None:
    account = make_account()

    def paused_rows() -> Iterator[dict[str, object]]:
        pause_bulk(list_bulks(1)[0].bulk_id)  # this bulk, paused before its first row
        yield {"account": account.name, "send": True, "email": "p@acme.ru"}

    paused, to_cancel = submit_bulk(paused_rows()), submit_bulk(paused_rows())
    assert bulk_status(paused).state == "PAUSED"
    with client(api, make_key("*")) as http:  # made by Python: an operator's key sees it
        again = http.post(f"/v1/bulks/{paused}/pause").json()
        assert again["state"] == "PAUSED" and again["changed"] is False
        resumed = http.post(f"/v1/bulks/{paused}/resume").json()
        assert resumed["changed"] is True and resumed["state"] in ("RUNNING", "DONE")
        stack.wait_until(lambda: bulk_status(paused).state == "DONE", 30, "the resumed bulk")
        assert http.post(f"/v1/bulks/{paused}/cancel").json()["changed"] is False

        cancelled = http.post(f"/v1/bulks/{to_cancel}/cancel").json()
        assert cancelled["changed"] is True and cancelled["state"] == "CANCELLED"
        is_problem(http.post("/v1/bulks/no-such-bulk/resume"), 404, "UnknownBulk")


def test_a_bulk_takes_the_rollout_and_schedule_options(
    api: str, make_account: MakeAccount, make_key: MakeKey
) -> None:
    accounts = [make_account() for _ in range(4)]
    rows = "account,send,email\n" + "".join(f"{a.name},true,w@acme.ru\n" for a in accounts)
    options = {"waves": "1,100%", "max_failures": "50%", "at": "+1h", "revert_after": "2h"}
    with client(api, make_key("*")) as http:
        posted = http.post(
            "/v1/bulks", content=rows, params=options, headers={"content-type": "text/csv"}
        )
        assert posted.status_code == 202, posted.text
        status = http.get(f"/v1/bulks/{posted.json()['bulk_id']}").json()
        assert (status["state"], status["waves"], status["revertible"]) == ("SCHEDULED", 2, True)
        assert status["scheduled_at"] and status["revert_after"] == 7200
        assert status["actor"].startswith("api:")
        http.post(f"/v1/bulks/{status['bulk_id']}/cancel")

        bad = http.post(
            "/v1/bulks",
            content=rows,
            params={"waves": "10,5"},
            headers={"content-type": "text/csv"},
        )
        assert "waves" in is_problem(bad, 422, "InputError")["detail"]


def test_openapi_document_is_valid(api: str) -> None:
    spec = httpx.get(api + "/openapi.json").json()
    validate(spec)  # raises on anything OpenAPI 3.1 does not allow
    paths = spec["paths"]
    assert set(paths["/v1/bulks/{bulk_id}"]) == {"get"}
    assert PROBLEM in paths["/v1/jobs/{job_id}"]["get"]["responses"]["404"]["content"]


def test_every_request_is_logged_with_the_key_name_never_the_key(
    api: str, make_account: MakeAccount, make_key: MakeKey, caplog: pytest.LogCaptureFixture
) -> None:
    account = make_account()
    key = make_key(name="svc-logged")
    with caplog.at_level(logging.INFO, logger="httpapi.access"), client(api, key) as http:
        http.post(f"/v1/accounts/{account.name}/reads")
        http.get("/v1/jobs/no-such-job")
        with client(api, "vmk_wrong") as stranger:
            stranger.get("/v1/jobs/no-such-job")

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "httpapi.access"]

    # The server's thread logs a request once its answer is out: wait for the third line.
    stack.wait_until(lambda: len(logged()) >= 3, 10, "three access lines")
    lines = logged()
    assert any(
        line.startswith(f"POST /v1/accounts/{account.name}/reads 202 key=svc-logged ")
        for line in lines
    ), lines
    assert "GET /v1/jobs/no-such-job 404 key=svc-logged" in "\n".join(lines)
    assert "GET /v1/jobs/no-such-job 401 key=-" in "\n".join(lines)
    assert all(line.endswith("ms") for line in lines)
    assert not any(key in line or "vmk_wrong" in line for line in lines)
