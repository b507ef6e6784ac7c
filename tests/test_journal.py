"""The journal of changes: the entry, and its Redis and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import cast

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from psycopg import sql

from simulator import stack
from worker.coordination.journal import (
    FIELDS,
    AsyncRedisJournal,
    Journal,
    JournalEntry,
    Outcome,
    RedisJournal,
    utc_now,
)
from worker.coordination.journal_pg import PostgresJournal
from worker.coordination.journal_redis import pack
from worker.core import keys

from .journal_helpers import Make, make_entry, postgres_url, unique


@pytest.fixture
def make() -> Make:
    return make_entry


@pytest.fixture
def redis_journal(redis_client: redis.Redis) -> RedisJournal:
    return RedisJournal(redis_client, days=90)


@pytest.fixture
def pg_journal() -> Iterator[PostgresJournal]:
    """A table of its own per test, dropped afterwards."""
    store = PostgresJournal(postgres_url(), days=90, table=unique("journal_test").replace("-", "_"))
    yield store
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(store.table)))
    store.close()


@pytest.fixture(params=["redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Journal:
    name = "redis_journal" if request.param == "redis" else "pg_journal"
    journal: Journal = request.getfixturevalue(name)
    return journal


# The entry


def test_an_entry_writes_the_documented_shape_and_reads_back(make: Make) -> None:
    entry = make(before=None, outcome=Outcome.FAILED)
    data = json.loads(entry.to_json())
    assert list(data) == list(FIELDS)
    assert data["before"] is None and data["after"] == {"send": True, "email": "vm@acme.ru"}
    assert data["outcome"] == "failed" and data["bulk_id"] is None and data["line"] is None
    assert JournalEntry.from_json(entry.to_json()) == entry
    assert " " not in entry.to_json().replace("ticket 19", "")


def test_time_is_utc_to_the_millisecond(make: Make) -> None:
    entry = make(time=utc_now().replace(microsecond=123_456))
    text = json.loads(entry.to_json())["time"]
    assert text.endswith(".123Z") and len(text) == len("2026-11-29T07:20:01.123Z")


def test_an_entry_carries_nothing_but_the_documented_fields(make: Make) -> None:
    data = json.loads(make().to_json())
    data["token"] = "tok-secret"
    with pytest.raises(ValueError, match="token"):
        JournalEntry.from_dict(data)
    with pytest.raises(TypeError):
        make(token="tok-secret")


@pytest.mark.parametrize(
    "fields",
    [
        {"bulk_id": "b", "line": None},  # a bulk row names its line
        {"job_id": "j", "bulk_id": "b", "line": 1},  # never both
        {"job_id": None},  # never neither
        {"outcome": "done"},
    ],
)
def test_an_incoherent_entry_is_refused(make: Make, fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"entry|line|outcome|not a valid"):
        make(**fields)


# Both stores


def test_history_is_newest_first_and_limited(store: Journal, make: Make) -> None:
    account, start = unique("acct"), utc_now() - timedelta(minutes=10)
    entries = [make(account=account, time=start + timedelta(seconds=i)) for i in range(5)]
    store.write_many(entries[::2])
    store.write_many(entries[1::2])
    assert store.history(account, limit=50) == entries[::-1]
    assert store.history(account, limit=2) == entries[:2:-1]
    assert store.history(unique("nobody"), limit=50) == []


def test_bulk_entries_come_in_line_order(store: Journal, make: Make) -> None:
    bulk_id, now = unique("bulk"), utc_now()
    rows = [make(account=f"a{n % 3}", bulk_id=bulk_id, line=n, time=now) for n in range(1, 2501)]
    store.write_many(rows[1000:])  # rows settle out of order; the journal still reads in order
    store.write_many(rows[:1000])
    assert list(store.bulk_entries(bulk_id)) == rows
    assert list(store.bulk_entries(unique("no-bulk"))) == []


def test_retention_drops_old_entries(store: Journal, make: Make) -> None:
    account = unique("acct")
    old = make(account=account, time=utc_now() - timedelta(days=91))
    new = make(account=account)
    store.write_many([old])
    store.write_many([new])
    assert store.history(account, limit=50) == [new]


# Redis


def test_redis_keeps_compact_members_without_the_token(
    redis_client: redis.Redis, redis_journal: RedisJournal, make: Make
) -> None:
    account, bulk_id = unique("acct"), unique("bulk")
    job_entry, bulk_row = make(account=account), make(account=account, bulk_id=bulk_id, line=7)
    redis_journal.write_many([job_entry, bulk_row])
    members = cast(list[bytes], redis_client.zrange(keys.journal_account(account), 0, -1))
    member, reference = sorted(members, reverse=True)  # b"{" sorts after b"b"
    assert b" " not in member.replace(b"ticket 19", b"")
    assert set(json.loads(member)) <= set("tcbaurojkl")
    # A bulk row is kept once, in its bulk's set: the account's holds a short reference,
    # so a set of one member stays a listpack (zset-max-listpack-value is 64 bytes).
    assert reference == f"b:{bulk_id}:7".encode() and len(reference) <= 64
    other = unique("acct")
    redis_journal.write_many([make(account=other, bulk_id=bulk_id, line=8)])
    assert redis_client.object("encoding", keys.journal_account(other)) == b"listpack"
    (in_bulk,) = cast(
        list[tuple[bytes, float]],
        redis_client.zrange(keys.journal_bulk(bulk_id), 0, 0, withscores=True),
    )
    assert in_bulk[1] == 7 and account.encode() in in_bulk[0]
    assert redis_journal.history(account) == sorted(
        [job_entry, bulk_row], key=lambda e: e.time, reverse=True
    )


def test_redis_prunes_on_write_and_expires_keys(
    redis_client: redis.Redis, redis_journal: RedisJournal, make: Make
) -> None:
    account, bulk_id = unique("acct"), unique("bulk")
    redis_journal.write_many([make(account=account, time=utc_now() - timedelta(days=91))])
    redis_journal.write_many([make(account=account, bulk_id=bulk_id, line=1)])
    assert redis_client.zcard(keys.journal_account(account)) == 1
    for key in (keys.journal_account(account), keys.journal_bulk(bulk_id)):
        assert 0 < redis_client.ttl(key) <= 90 * 86_400


def test_history_skips_a_reference_whose_bulk_is_gone(
    redis_client: redis.Redis, redis_journal: RedisJournal, make: Make
) -> None:
    account, bulk_id = unique("acct"), unique("bulk")
    row = make(account=account, bulk_id=bulk_id, line=3)
    redis_journal.write_many([row])
    assert redis_journal.history(account) == [row]
    redis_client.delete(keys.journal_bulk(bulk_id))
    assert redis_journal.history(account) == []


def test_a_retried_batch_adds_nothing(redis_journal: RedisJournal, make: Make) -> None:
    account = unique("acct")
    batch = [make(account=account), make(account=account, outcome=Outcome.UNCHANGED)]
    redis_journal.write_many(batch)
    redis_journal.write_many(batch)
    assert len(redis_journal.history(account, limit=50)) == 2


def test_the_async_journal_writes_one_batch(
    redis_url: str, redis_journal: RedisJournal, make: Make
) -> None:
    bulk_id = unique("bulk")
    rows = [make(account=unique("acct"), bulk_id=bulk_id, line=n) for n in range(1, 101)]

    async def write() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await AsyncRedisJournal(client, days=90).write_many(rows)
        finally:
            await client.aclose()

    assert asyncio.run(write()) == 100
    assert list(redis_journal.bulk_entries(bulk_id)) == rows
    assert redis_journal.history(rows[5].account, limit=5) == [rows[5]]


def test_one_batch_is_one_round_trip(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, make: Make
) -> None:
    sent: list[int] = []
    real = redis.client.Pipeline.execute

    def counting(self: redis.client.Pipeline, raise_on_error: bool = True) -> list[object]:
        sent.append(len(self.command_stack))
        return real(self, raise_on_error)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    bulk_id = unique("bulk")
    rows = [make(account=unique("acct"), bulk_id=bulk_id, line=n) for n in range(1, 501)]
    assert RedisJournal(redis_client, days=90).write_many(rows) == 500
    assert len(sent) == 1


# PostgreSQL specifics


def test_postgres_deletes_expired_rows_on_a_later_write(
    pg_journal: PostgresJournal, make: Make
) -> None:
    account = unique("acct")
    pg_journal.write_many([make(account=account, time=utc_now() - timedelta(days=91))])
    pg_journal._pruned_at = float("-inf")  # an hour has passed
    pg_journal.write_many([make(account=account)])
    with psycopg.connect(pg_journal.url) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_journal.table))
        count = conn.execute(query).fetchone()
    assert count == (1,)


def test_postgres_reconnects_after_a_dropped_connection(
    pg_journal: PostgresJournal, make: Make
) -> None:
    account = unique("acct")
    pg_journal.write_many([make(account=account)])
    pg_journal.close()
    pg_journal.write_many([make(account=account)])
    assert len(pg_journal.history(account, limit=50)) == 2


def test_a_redis_without_the_script_gets_it_again(tmp_path: Path, make: Make) -> None:
    """A restarted (or SCRIPT FLUSHed) Redis answers NOSCRIPT: the batch is written once
    the script is loaded again. On a Redis of its own: SCRIPT FLUSH is server-wide."""
    server = stack.start_redis(tmp_path)
    client = redis.Redis.from_url(server.url)
    try:
        journal = RedisJournal(client, days=90)
        account, bulk_id = unique("acct"), unique("bulk")
        journal.write_many([make(account=account)])
        client.script_flush()
        row = make(account=account, bulk_id=bulk_id, line=1)
        assert journal.write_many([row]) == 1
        client.script_flush()

        async def write() -> int:
            aclient = aioredis.Redis.from_url(server.url)
            try:
                return await AsyncRedisJournal(aclient, days=90).write_many([row])
            finally:
                await aclient.aclose()

        assert asyncio.run(write()) == 1  # written again: still one entry
        assert len(journal.history(account)) == 2
        assert list(journal.bulk_entries(bulk_id)) == [row]
    finally:
        client.close()
        server.stop()


def test_any_text_goes_through_the_script_unchanged(
    redis_client: redis.Redis, redis_journal: RedisJournal, make: Make
) -> None:
    """Members travel to Lua inside one JSON argument: quotes, backslashes, slashes and
    non-ASCII come out as the bytes Python packed, so a retried batch still adds nothing."""
    account, bulk_id = unique("acct"), unique("bulk")
    reason = 'a "quoted" \\ path/to тикет ✓ \U0001f600'
    entries = [make(account=account, reason=reason), make(account=account, bulk_id=bulk_id, line=2)]
    redis_journal.write_many(entries)
    redis_journal.write_many(entries)
    assert redis_journal.history(account) == sorted(entries, key=lambda e: e.time, reverse=True)
    members = cast(list[bytes], redis_client.zrange(keys.journal_account(account), 0, -1))
    assert pack(entries[0], in_bulk=False) in members and len(members) == 2
