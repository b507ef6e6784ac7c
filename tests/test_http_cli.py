"""`voicemail serve` and `voicemail apikeys` as operators run them, and curl as a caller
written in no language of ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli import cli
from simulator import stack

from .conftest import VOICEMAIL, SimAccount, voicemail

pytestmark = [pytest.mark.integration]


@pytest.fixture
def served(worker: stack.Service, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`voicemail serve` in a process of its own, its port from $PORT; (URL, its log)."""
    port = stack.free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [VOICEMAIL, "serve", "--host", "127.0.0.1"],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    service = stack.Service("serve", proc)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(url + "/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    stack.wait_until(answers, 30, "voicemail serve")
    yield url, log
    service.stop()


def curl(*args: str) -> tuple[int, dict[str, object]]:
    """curl's HTTP status and JSON body."""
    done = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_curl_enqueues_and_polls_with_a_key_from_apikeys_add(
    served: tuple[str, Path], make_account: Callable[..., SimAccount]
) -> None:
    url, log = served
    account = make_account()
    env = dict(os.environ)
    added = subprocess.run(
        [VOICEMAIL, "apikeys", "add", "curl-svc", "--accounts", account.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("vmk_") and "not shown again" in added.stderr
    auth = f"Authorization: Bearer {key}"

    status, body = curl(
        "-X", "POST", f"{url}/v1/accounts/{account.name}/updates", "-H", auth,
        "-H", "Content-Type: application/json", "-d", '{"send": true, "email": "curl@acme.ru"}',
    )  # fmt: skip
    assert status == 202, body
    status, job = curl(f"{url}/v1/jobs/{body['id']}?wait=20", "-H", auth)
    assert status == 200 and job["state"] == "SUCCESS", job
    assert job["result"] == {"account": account.name, "send": True, "email": "curl@acme.ru"}

    code, listed, _ = voicemail(env, "apikeys", "list")
    assert code == 0 and key not in json.dumps(listed)
    lines = subprocess.run(
        [VOICEMAIL, "apikeys", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    mine = [json.loads(line) for line in lines if '"curl-svc"' in line]
    assert mine[0]["accounts"] == account.name and mine[0]["created_at"].endswith("Z")
    assert set(mine[0]) == {"name", "accounts", "created_at"}

    assert voicemail(env, "apikeys", "revoke", "curl-svc")[0] == 0
    status, problem = curl(f"{url}/v1/jobs/{body['id']}", "-H", auth)
    assert status == 401 and problem["type"] == "Unauthorized"
    assert voicemail(env, "apikeys", "revoke", "curl-svc")[0] == 1  # nothing left to revoke

    text = log.read_text()
    assert f"POST /v1/accounts/{account.name}/updates 202 key=curl-svc" in text
    assert f"GET /v1/jobs/{body['id']} 401 key=-" in text
    assert key not in text


def apikeys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICEMAIL, "apikeys", *args], env=dict(os.environ), capture_output=True, text=True
    )


def test_apikeys_add_refuses_a_taken_or_bad_name(worker: stack.Service) -> None:
    assert apikeys("add", "taken-svc").returncode == 0
    taken = apikeys("add", "taken-svc")
    assert taken.returncode == 2 and taken.stdout == ""
    assert (
        taken.stderr == "voicemail: error: an API key named 'taken-svc' exists (revoke it first)\n"
    )
    bad = apikeys("add", "no spaces/or slashes")
    assert bad.returncode == 2 and "API key name" in bad.stderr
    assert apikeys("revoke", "taken-svc").returncode == 0


def test_serve_without_the_http_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "voicemail: error: voicemail serve needs the http extra: "
        "pip install 'voicemail-worker[http]'"
    )
