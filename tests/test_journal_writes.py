"""What writes the journal: single updates and bulk rows, through the `voicemail` CLI
against the simulator and a real worker, with the journal in Redis and in PostgreSQL
(`VOICEMAIL_JOURNAL_URL`); `--actor`, `--reason` and `VOICEMAIL_REASON_REQUIRED_ROWS`."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator import stack
from worker.coordination.journal import FIELDS

from .conftest import ISSUED_TOKENS, VOICEMAIL, worker_env
from .journal_helpers import postgres_url

pytestmark = pytest.mark.integration


@dataclass
class Journaled:
    """A Redis and a worker of their own (no other worker journals elsewhere), and the
    environment the CLI runs with: the journal in Redis, or in PostgreSQL."""

    env: dict[str, str]
    store: str

    def cli(self, *args: str, stdin: str = "", **extra: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [VOICEMAIL, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **extra},
            timeout=180,
        )
        return done.returncode, done.stdout, done.stderr

    def lines(self, *args: str) -> list[dict[str, Any]]:
        code, out, err = self.cli(*args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    def accounts(self, sim: stack.SimulatorControl, count: int) -> list[str]:
        """Accounts the simulator knows, imported into this Redis's credential store."""
        prefix = f"jr-{uuid.uuid4().hex[:8]}"
        names = [f"{prefix}-{i:04d}" for i in range(count)]
        ISSUED_TOKENS.extend(f"tok-{n}" for n in names)
        sim.add_accounts([{"account": n, "token": f"tok-{n}"} for n in names])
        csv = "account,token\n" + "".join(f"{n},tok-{n}\n" for n in names)
        code, _, err = self.cli("accounts", "import", "-", stdin=csv)
        assert code == 0, err
        return names


@pytest.fixture(scope="module", params=["redis", "postgres"])
def journaled(
    request: pytest.FixtureRequest, simulator: stack.Service, log_dir: Path
) -> Iterator[Journaled]:
    extra = {"VOICEMAIL_JOURNAL_URL": postgres_url()} if request.param == "postgres" else {}
    own_redis = stack.start_redis(log_dir)
    env = worker_env(simulator.url, REDIS_URL=own_redis.url, **extra)
    env.pop("VOICEMAIL_REASON_REQUIRED_ROWS", None)
    service = stack.start_worker(log_dir, env, name=f"journal-{request.param}")
    try:
        yield Journaled(env, request.param)
    finally:
        service.stop()
        own_redis.stop()


def rows_file(tmp_path: Path, names: list[str], tag: str = "new") -> Path:
    path = tmp_path / f"{tag}-{uuid.uuid4().hex[:6]}.csv"
    lines = "".join(f"{n},true,{n}@{tag}.example.com\n" for n in names)
    path.write_text("account,send,email\n" + lines)
    return path


def test_a_single_update_leaves_one_entry_with_actor_and_reason(
    journaled: Journaled, sim: stack.SimulatorControl
) -> None:
    (name,) = journaled.accounts(sim, 1)
    code, out, err = journaled.cli(
        *("update", name, "--send", "--email", f"{name}@one.example.com"),
        *("--actor", "alice@ops", "--reason", "ticket 7", "--wait"),
    )
    assert code == 0, err
    job_id = json.loads(out)["id"]
    # Without --actor: the caller's $USER@host.
    code, out, err = journaled.cli(
        "update", name, "--no-send", "--email", f"{name}@two.example.com", "--wait"
    )
    assert code == 0, err
    second = json.loads(out)["id"]

    newest, oldest = journaled.lines("history", name)
    assert list(oldest) == list(FIELDS)
    assert {k: v for k, v in oldest.items() if k != "time"} == {
        "account": name,
        "before": None,  # a single update does not read first
        "after": {"send": True, "email": f"{name}@one.example.com"},
        "actor": "alice@ops",
        "reason": "ticket 7",
        "job_id": job_id,
        "bulk_id": None,
        "line": None,
        "outcome": "applied",
    }
    assert newest["job_id"] == second and newest["outcome"] == "applied"
    assert newest["actor"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert newest["reason"] == ""
    assert newest["after"] == {"send": False, "email": f"{name}@two.example.com"}
    assert newest["time"] >= oldest["time"]
    assert journaled.lines("history", name, "--limit", "1") == [newest]


def test_a_bulk_of_100_rows_leaves_one_entry_per_row(
    journaled: Journaled, sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    names = journaled.accounts(sim, 100)
    held = names[:10]  # already hold the file's values: unchanged, nothing sent
    for name in held:
        sim.set_values(name, send=True, email=f"{name}@new.example.com")
    found = {n: {k: sim.account(n)[k] for k in ("send", "email")} for n in names}
    code, out, err = journaled.cli(
        *("bulk", "submit", str(rows_file(tmp_path, names)), "--revertible", "--wait"),
        *("--actor", "bob@ops", "--reason", "move to new mailboxes"),
    )
    assert code == 0, err
    bulk_id = json.loads(out)["bulk_id"]
    code, out, err = journaled.cli("bulk", "status", bulk_id)
    assert code == 0, err
    status = json.loads(out)
    assert (status["actor"], status["reason"]) == ("bob@ops", "move to new mailboxes")

    entries = journaled.lines("bulk", "journal", bulk_id)
    assert [e["line"] for e in entries] == list(range(2, 102))
    assert [e["account"] for e in entries] == names
    assert {e["bulk_id"] for e in entries} == {bulk_id}
    assert {(e["actor"], e["reason"]) for e in entries} == {("bob@ops", "move to new mailboxes")}
    for entry in entries:
        name = entry["account"]
        assert entry["after"] == {"send": True, "email": f"{name}@new.example.com"}
        assert entry["job_id"] is None
        if name in held:
            assert entry["outcome"] == "unchanged"
            assert entry["before"] == entry["after"]
        else:
            assert entry["outcome"] == "applied"
            assert entry["before"] == found[name]

    # The account's history: the bulk's row, newest first after a single update.
    code, _, err = journaled.cli(
        "update", names[20], "--send", "--email", "later@acme.ru", "--reason", "fix", "--wait"
    )
    assert code == 0, err
    latest, from_bulk = journaled.lines("history", names[20])
    assert latest["reason"] == "fix" and latest["job_id"] is not None
    assert from_bulk == entries[20]


def test_a_revert_journals_reverted_rows(
    journaled: Journaled, sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    names = journaled.accounts(sim, 5)
    code, out, err = journaled.cli(
        "bulk", "submit", str(rows_file(tmp_path, names)), "--revertible", "--wait"
    )
    assert code == 0, err
    bulk_id = json.loads(out)["bulk_id"]
    code, out, err = journaled.cli(
        *("bulk", "revert", bulk_id, "--wait", "--actor", "carol", "--reason", "rollback")
    )
    assert code == 0, err
    revert_id = json.loads(out)["bulk_id"]
    changed = journaled.lines("bulk", "journal", bulk_id)
    reverted = journaled.lines("bulk", "journal", revert_id)
    assert [e["outcome"] for e in reverted] == ["reverted"] * 5
    assert {(e["actor"], e["reason"]) for e in reverted} == {("carol", "rollback")}
    for change, back in zip(changed, reverted, strict=True):
        assert back["account"] == change["account"]
        assert back["after"] == change["before"]  # put back what the bulk found
        assert back["before"] == change["after"]  # read first: what the bulk had set


def test_a_long_bulk_without_a_reason_is_refused_before_anything_is_sent(
    journaled: Journaled, sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    names = journaled.accounts(sim, 101)
    path = rows_file(tmp_path, names)
    limit = {"VOICEMAIL_REASON_REQUIRED_ROWS": "100"}
    bulks = journaled.lines("bulk", "list")
    code, out, err = journaled.cli("bulk", "submit", str(path), **limit)
    assert code == 2
    assert out == ""
    assert err == (
        "voicemail: error: a bulk of more than 100 rows needs a reason "
        "(VOICEMAIL_REASON_REQUIRED_ROWS): give --reason, or reason= from Python\n"
    )
    assert journaled.lines("bulk", "list") == bulks  # nothing recorded, nothing queued
    assert all(sim.account(n)["requests"] == 0 for n in names)
    # 100 rows need none; 101 with a reason go (dry runs: counted, nothing sent).
    code, out, err = journaled.cli(
        "bulk", "submit", str(rows_file(tmp_path, names[:100])), "--dry-run", **limit
    )
    assert code == 0 and json.loads(out)["would_send"] == 100, err
    code, out, err = journaled.cli(
        "bulk", "submit", str(path), "--dry-run", "--reason", "all of them", **limit
    )
    assert code == 0 and json.loads(out)["would_send"] == 101, err
    assert all(sim.account(n)["requests"] == 0 for n in names)


def test_verify_fix_is_journaled_as_the_projects_own_doing(
    journaled: Journaled, sim: stack.SimulatorControl, tmp_path: Path
) -> None:
    names = journaled.accounts(sim, 3)
    path = rows_file(tmp_path, names)
    code, _, err = journaled.cli("bulk", "submit", str(path), "--wait")
    assert code == 0, err
    sim.set_values(names[1], send=False, email="by-hand@acme.ru")  # drifted behind its back
    code, out, err = journaled.cli("bulk", "verify", str(path), "--fix")
    assert code == 3, err
    summary = json.loads(out)
    (entry,) = journaled.lines("bulk", "journal", summary["fix_bulk_id"])
    assert (entry["account"], entry["actor"], entry["outcome"]) == (
        names[1],
        "voicemail",
        "applied",
    )
    assert entry["reason"].startswith(f"verify {summary['bulk_id']} found the account drifted")
    # The verify itself only read: no entry of its own.
    code, _, err = journaled.cli("bulk", "journal", summary["bulk_id"])
    assert code == 1 and "no journal entries" in err
