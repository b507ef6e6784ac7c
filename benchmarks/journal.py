"""The journal of changes: bytes per entry in Redis, write rate, and the `history` query
with a million entries kept, in Redis and in PostgreSQL.

    .venv/bin/python benchmarks/journal.py [--entries 1000000] [--pg-url postgresql://...]

Starts a redis-server of its own (so MEMORY USAGE counts nothing else), and in
PostgreSQL writes a table of its own (`journal_bench_<hex>`, dropped at the end;
`--pg-url ''` skips it). Entries look like production ones: e-mails of ~30
characters, a uuid job or bulk id, an actor and a short reason.

1. Bytes per entry at 100,000 entries over 10,000 accounts, `MEMORY USAGE key SAMPLES
   0` summed over the journal's keys: single-job entries (in the account's set) and bulk
   rows (in the bulk's set, referenced from the account's), each in a fresh database;
   with the server's zset-max-listpack-value and with it raised to 512.
2. Write rate: `write_many` in batches of 1,000, sync and asyncio.
3. 1,000,000 entries kept (10,000 accounts of ~90 entries, one hot account holding
   100,000 and bulks of 10,000 rows): `history(account, 50)`, the call behind
   `voicemail history` without the CLI's start-up, timed on random accounts and on the
   hot one; `bulk_entries` of one 10,000-row bulk. The same in PostgreSQL.

Figures (2026-11-29, 2 cores shared with four other test suites running, Redis 7 and
PostgreSQL 15 on the same host; the write rates include building the entries in Python):

    redis bytes/entry at 100,000, single jobs, zset-max-listpack-value 64:   397
    redis bytes/entry at 100,000, bulk rows, listpack-value 64:              390
    the same with zset-max-listpack-value 512:                        236 / 390
    (an account-set member: 183 bytes for a job entry, 43 for a bulk row's reference)
    redis write_many, batches of 1,000:   29,300 entries/s sync, 34,700 asyncio
    redis, 1,000,000 kept (used_memory 390 MiB):
        history(account, 50), ~100 per account   p50 2.24 ms  p95 7.64 ms  max 10.9 ms
        history(hot account, 50), 100,000 in it  p50 1.35 ms  p95 2.04 ms  max 5.4 ms
        bulk_entries, 10,000 rows                109 ms
    postgres COPY, batches of 1,000:      34,600 entries/s
    postgres, 1,000,000 rows (387 MiB with indexes):
        history(account, 50), ~90 per account    p50 1.18 ms  p95 5.16 ms  max 14.6 ms
        history(hot account, 50), 90,000 in it   p50 0.49 ms  p95 0.93 ms  max 1.4 ms
        bulk_entries, 10,000 rows                90 ms
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import stack  # noqa: E402
from worker.coordination.journal import (  # noqa: E402
    AsyncRedisJournal,
    Journal,
    JournalEntry,
    Outcome,
    RedisJournal,
    Values,
    utc_now,
)
from worker.core import keys  # noqa: E402

ACCOUNTS = 10_000
HOT = "acct-hot"
BATCH = 1000
BULK_ROWS = 10_000


def entries(count: int, *, bulk: bool, hot_share: float = 0.0) -> Iterator[JournalEntry]:
    """`count` entries over ACCOUNTS accounts (a `hot_share` of them on HOT), timed over
    the last 60 days; `bulk` makes them rows of bulks of BULK_ROWS rows."""
    rng, now = random.Random(count), utc_now()
    bulk_id = str(uuid.uuid4())
    for n in range(count):
        hot = rng.random() < hot_share
        number = rng.randrange(ACCOUNTS)
        account = HOT if hot else f"acct-{number:06d}"
        if bulk and n % BULK_ROWS == 0:
            bulk_id = str(uuid.uuid4())
        yield JournalEntry(
            time=now - timedelta(seconds=rng.uniform(0, 60 * 86_400)),
            account=account,
            before=Values(send=False, email=f"voicemail-{number}@company-{number % 97}.ru"),
            after=Values(send=True, email=f"voicemail-{number}@company-{number % 89}.ru"),
            actor="bulk-import@ops.example.ru" if bulk else "crm-service",
            reason="migration wave 3" if bulk else f"ticket {n}",
            outcome=Outcome.APPLIED,
            job_id=None if bulk else str(uuid.uuid4()),
            bulk_id=bulk_id if bulk else None,
            line=(n % BULK_ROWS) + 1 if bulk else None,
        )


def batches(items: Iterator[JournalEntry], size: int = BATCH) -> Iterator[list[JournalEntry]]:
    batch: list[JournalEntry] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_all(journal: Journal, items: Iterator[JournalEntry], size: int = BATCH) -> float:
    """Entries written per second."""
    started, count = time.perf_counter(), 0
    for batch in batches(items, size):
        count += journal.write_many(batch)
    return count / (time.perf_counter() - started)


def journal_bytes(client: redis.Redis) -> int:
    total = 0
    for key in client.scan_iter(keys.JOURNAL_PREFIX + "*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


def bytes_per_entry(client: redis.Redis, count: int) -> None:
    """As the server is configured, then with zset-max-listpack-value raised so that an
    account's set of up to 128 entries is a listpack (an option for operators)."""
    default = str(client.config_get("zset-max-listpack-value")["zset-max-listpack-value"])
    for listpack in (default, "512"):
        client.config_set("zset-max-listpack-value", listpack)
        for bulk in (False, True):
            client.flushdb()
            write_all(RedisJournal(client, days=90), entries(count, bulk=bulk))
            kind = "bulk rows (in the bulk)" if bulk else "single jobs"
            member = client.zrange(keys.journal_account("acct-000000"), 0, 0)
            print(
                f"redis bytes/entry at {count:,} {kind:<21} zset-max-listpack-value "
                f"{listpack:>3}: {journal_bytes(client) / count:6.1f}"
                f"  (an account-set member: {len(member[0]) if member else 0} bytes)"
            )
    client.config_set("zset-max-listpack-value", default)


def async_rate(url: str, count: int) -> float:
    async def run() -> float:
        client = aioredis.Redis.from_url(url)
        journal = AsyncRedisJournal(client, days=90)
        started = time.perf_counter()
        for batch in batches(entries(count, bulk=True)):
            await journal.write_many(batch)
        await client.aclose()
        return count / (time.perf_counter() - started)

    return asyncio.run(run())


def timings(call: Callable[[], Any], runs: int) -> str:
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    p95 = spent[min(len(spent) - 1, round(0.95 * (len(spent) - 1)))]
    return f"p50 {statistics.median(spent):6.2f} ms  p95 {p95:6.2f} ms  max {spent[-1]:6.2f} ms"


def queries(name: str, journal: Journal, total: int) -> None:
    rng = random.Random(7)
    accounts = [f"acct-{rng.randrange(ACCOUNTS):06d}" for _ in range(300)]
    picks = iter(accounts * 2)
    typical = len(journal.history(accounts[0], 1000))
    print(f"{name} history(account, 50), {total:,} kept, ~{typical} per account: ", end="")
    print(timings(lambda: journal.history(next(picks), 50), 300))
    hot = len(journal.history(HOT, 1_000_000))
    print(f"{name} history(hot account, 50), {hot:,} entries in it:   ", end="")
    print(timings(lambda: journal.history(HOT, 50), 100))


def fill(journal: Journal, total: int, size: int) -> float:
    """Half single jobs, half bulk rows; a tenth of all on the hot account."""
    half = total // 2
    rate = write_all(journal, entries(half, bulk=False, hot_share=0.1), size)
    write_all(journal, entries(total - half, bulk=True, hot_share=0.1), size)
    return rate


def one_bulk(journal: Journal) -> str:
    rows = list(entries(BULK_ROWS, bulk=True))  # one bulk id for all of them
    for batch in batches(iter(rows)):
        journal.write_many(batch)
    return str(rows[0].bulk_id)


def redis_part(args: argparse.Namespace) -> None:
    server = stack.start_redis(Path(tempfile.mkdtemp(prefix="journal-bench-")))
    client = redis.Redis.from_url(server.url)
    try:
        bytes_per_entry(client, args.memory_entries)
        client.flushdb()
        journal = RedisJournal(client, days=90)
        rate = write_all(journal, entries(100_000, bulk=True))
        print(f"redis write_many, batches of {BATCH}, bulk rows: {rate:9,.0f} entries/s (sync)")
        rate = async_rate(server.url, 100_000)
        print(f"redis write_many, batches of {BATCH}, bulk rows: {rate:9,.0f} entries/s (asyncio)")
        client.flushdb()
        fill(journal, args.entries, BATCH)
        used = int(client.info("memory")["used_memory"])
        print(f"redis with {args.entries:,} entries: used_memory {used / 2**20:,.0f} MiB")
        queries("redis", journal, args.entries)
        bulk_id = one_bulk(journal)
        print(f"redis bulk_entries, {BULK_ROWS:,} rows: ", end="")
        print(timings(lambda: sum(1 for _ in journal.bulk_entries(bulk_id)), 10))
    finally:
        client.close()
        server.stop()


def pg_part(args: argparse.Namespace) -> None:
    import psycopg
    from psycopg import sql

    from worker.coordination.journal_pg import PostgresJournal

    table = f"journal_bench_{uuid.uuid4().hex[:8]}"
    journal = PostgresJournal(args.pg_url, days=90, table=table)
    try:
        rate = write_all(journal, entries(100_000, bulk=True))
        print(f"postgres write_many (COPY), batches of {BATCH}, bulk rows: {rate:9,.0f} entries/s")
        fill(journal, args.entries - 100_000, 10_000)
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
            row = conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()
        size = row[0] / 2**20 if row else 0.0
        print(f"postgres with {args.entries:,} rows: table and indexes {size:,.0f} MiB")
        queries("postgres", journal, args.entries)
        bulk_id = one_bulk(journal)
        print(f"postgres bulk_entries, {BULK_ROWS:,} rows: ", end="")
        print(timings(lambda: sum(1 for _ in journal.bulk_entries(bulk_id)), 10))
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--memory-entries", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()
    if not args.skip_redis:
        redis_part(args)
    if args.pg_url:
        pg_part(args)


if __name__ == "__main__":
    main()
