"""The journal's settings (on, off, where), its CLI commands, and a worker without psycopg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
import redis
from click.testing import CliRunner

from cli import cli
from worker.coordination.journal import (
    FIELDS,
    JournalEntry,
    NullJournal,
    RedisJournal,
    journal_store,
    open_journal,
    utc_now,
)
from worker.coordination.journal_pg import PostgresJournal
from worker.core import keys
from worker.core.errors import ConfigError
from worker.core.settings import load_settings

from .journal_helpers import PG_URL, make_entry, unique

# Off, and the choice of store


def test_off_writes_nothing(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> None:
    monkeypatch.setenv("VOICEMAIL_JOURNAL", "off")
    settings = load_settings()
    assert settings.journal is False
    journal = open_journal(settings, redis_client)
    assert isinstance(journal, NullJournal)
    account = unique("acct")
    assert journal.write_many([make_entry(account=account)]) == 0
    assert not redis_client.exists(keys.journal_account(account))
    assert isinstance(journal_store(settings, redis_client), RedisJournal)  # for reading


def test_settings_choose_the_store(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    assert isinstance(open_journal(load_settings(), redis_client), RedisJournal)
    monkeypatch.setenv("VOICEMAIL_JOURNAL_URL", "")
    assert load_settings().journal_url is None
    monkeypatch.setenv("VOICEMAIL_JOURNAL_URL", PG_URL)
    monkeypatch.setenv("VOICEMAIL_JOURNAL_DAYS", "7")
    journal = open_journal(load_settings(), redis_client)
    assert isinstance(journal, PostgresJournal) and journal.days == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOICEMAIL_JOURNAL_URL", "mysql://db/journal"),
        ("VOICEMAIL_JOURNAL_DAYS", "0"),
        ("VOICEMAIL_JOURNAL", "sometimes"),
    ],
)
def test_bad_journal_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_postgres_without_psycopg_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    monkeypatch.setenv("VOICEMAIL_JOURNAL_URL", PG_URL)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "worker.coordination.journal_pg")
    with pytest.raises(ConfigError, match=r"voicemail-worker\[postgres\]") as info:
        open_journal(load_settings(), redis_client)
    assert "\n" not in str(info.value)


# The CLI, against the test Redis


def test_cli_history_prints_json_lines_newest_first(redis_client: redis.Redis) -> None:
    account, start = unique("acct"), utc_now() - timedelta(minutes=1)
    entries = [make_entry(account=account, time=start + timedelta(seconds=i)) for i in range(4)]
    RedisJournal(redis_client, days=90).write_many(entries)
    result = CliRunner().invoke(cli, ["history", account, "--limit", "3"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [JournalEntry.from_json(line) for line in lines] == entries[:0:-1]
    assert all(list(json.loads(line)) == list(FIELDS) for line in lines)


def test_cli_bulk_journal_prints_lines_in_order(redis_client: redis.Redis) -> None:
    bulk_id = unique("bulk")
    rows = [make_entry(account=unique("acct"), bulk_id=bulk_id, line=n) for n in (3, 1, 2)]
    RedisJournal(redis_client, days=90).write_many(rows)
    result = CliRunner().invoke(cli, ["bulk", "journal", bulk_id])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [1, 2, 3]


def test_cli_bulk_journal_of_an_unknown_bulk_exits_1() -> None:
    bulk_id = unique("no-bulk")
    result = CliRunner().invoke(cli, ["bulk", "journal", bulk_id])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"voicemail: error: no bulk {bulk_id} (never submitted, or expired)\n"


def test_a_worker_without_psycopg_keeps_its_journal_in_redis(redis_url: str) -> None:
    """psycopg is the `postgres` extra: without it and without VOICEMAIL_JOURNAL_URL the
    journal opens, writes and reads."""
    probe = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import redis\n"
        "from worker.core.settings import load_settings\n"
        "from worker.coordination.journal import open_journal\n"
        f"journal = open_journal(load_settings(), redis.Redis.from_url({redis_url!r}))\n"
        "print(type(journal).__name__, journal.history('nobody-at-all'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VOICEMAIL_JOURNAL_URL"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "RedisJournal []"
