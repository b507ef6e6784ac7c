"""The journal in PostgreSQL (`VOICEMAIL_JOURNAL_URL`), through psycopg 3.

Only this module imports psycopg (the `postgres` extra): a worker whose journal lives
in Redis never needs it. The table and its indexes are created on first use, under an
advisory lock because two workers racing through CREATE TABLE IF NOT EXISTS can still
collide in the catalogue. (account, time DESC, id DESC) serves `history`, (bulk_id, line, id)
the bulk's entries. Rows older than the retention are deleted at most once an hour per
process, on a write: a DELETE on every batch would cost more than the batch.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from .journal_entry import FIELDS, JournalEntry, Outcome, Values, utc_now

DEFAULT_TABLE = "voicemail_journal"
PRUNE_EVERY = 3600.0  # seconds between two deletes of expired rows, per process
PAGE = 1000
# An entry's fields, `before` and `after` each as two columns.
COLUMNS = tuple(
    column
    for name in FIELDS
    for column in ((f"{name}_send", f"{name}_email") if name in ("before", "after") else (name,))
)
LINE = 1 + COLUMNS.index("line")  # in a row of `_select`, which puts id first
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY,
    time timestamptz NOT NULL,
    account text NOT NULL,
    before_send boolean,
    before_email text,
    after_send boolean NOT NULL,
    after_email text NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL,
    job_id text,
    bulk_id text,
    line integer,
    outcome text NOT NULL
);
CREATE INDEX IF NOT EXISTS {by_account} ON {table} (account, time DESC, id DESC);
CREATE INDEX IF NOT EXISTS {by_bulk} ON {table} (bulk_id, line, id) WHERE bulk_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS {by_time} ON {table} (time);
"""


def _identifier(name: str) -> sql.Composable:
    if not _NAME.match(name):
        raise ValueError(f"not a plain table name: {name!r}")
    return sql.Identifier(*name.split("."))


def _row(entry: JournalEntry) -> tuple[Any, ...]:
    before = entry.before
    return (
        entry.time,
        entry.account,
        before.send if before else None,
        before.email if before else None,
        entry.after.send,
        entry.after.email,
        entry.actor,
        entry.reason,
        entry.job_id,
        entry.bulk_id,
        entry.line,
        entry.outcome.value,
    )


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    moment, account, b_send, b_email, a_send, a_email, actor, reason, job, bulk, line, out = row
    return JournalEntry(
        time=moment.astimezone(UTC),
        account=account,
        before=None if b_send is None else Values(send=b_send, email=b_email),
        after=Values(send=a_send, email=a_email),
        actor=actor,
        reason=reason,
        outcome=Outcome(out),
        job_id=job,
        bulk_id=bulk,
        line=line,
    )


class PostgresJournal:
    """One connection per store (autocommit), opened on first use and again after it
    broke; a lock keeps one batch at a time on it when threads share the store."""

    def __init__(self, url: str, days: int, table: str = DEFAULT_TABLE) -> None:
        self.url = url
        self.days = days
        self.table = table
        self._name = _identifier(table)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._lock = threading.Lock()
        self._pruned_at = float("-inf")

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self._create_schema(conn)
            self._conn = conn
        return self._conn

    def _create_schema(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        base = self.table.rsplit(".", 1)[-1]
        statement = sql.SQL(SCHEMA).format(
            table=self._name,
            by_account=sql.Identifier(f"{base}_account_time"),
            by_bulk=sql.Identifier(f"{base}_bulk_line"),
            by_time=sql.Identifier(f"{base}_time"),
        )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.table])
            conn.execute(statement)

    def _cutoff(self) -> datetime:
        return utc_now() - timedelta(days=self.days)

    def _prune_if_due(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        query = sql.SQL("DELETE FROM {} WHERE time < %s").format(self._name)
        conn.execute(query, [self._cutoff()])
        self._pruned_at = time.monotonic()

    def write_many(self, entries: Iterable[JournalEntry]) -> int:
        """Write a batch with one COPY (one round trip for the rows). Returns the count."""
        rows = [_row(e) for e in entries]
        if not rows:
            return 0
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self._name, sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        )
        with self._lock:
            conn = self._connection()
            self._prune_if_due(conn)
            with conn.cursor() as cur, cur.copy(copy) as writer:
                for row in rows:
                    writer.write_row(row)
        return len(rows)

    def write(self, entry: JournalEntry) -> None:
        self.write_many([entry])

    def _select(self, where: LiteralString, order: LiteralString) -> sql.Composed:
        """SELECT id and the entry's columns; `where` and `order` are this module's text."""
        return sql.SQL("SELECT id, {} FROM {} WHERE {} ORDER BY {} LIMIT %s").format(
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
            self._name,
            sql.SQL(where),
            sql.SQL(order),
        )

    def history(self, account: str, limit: int = 50) -> list[JournalEntry]:
        """The account's entries within the retention, newest first."""
        query = self._select("account = %s AND time >= %s", "time DESC, id DESC")
        with self._lock:
            rows = self._connection().execute(query, [account, self._cutoff(), limit])
            return [_entry(r[1:]) for r in rows.fetchall()]

    def bulk_entries(self, bulk_id: str) -> Iterator[JournalEntry]:
        """The bulk's entries in line order, a page at a time (keyset on line, id)."""
        query = self._select("bulk_id = %s AND time >= %s AND (line, id) > (%s, %s)", "line, id")
        after: tuple[int, int] = (-(2**31), 0)
        while True:
            with self._lock:
                cur = self._connection().execute(query, [bulk_id, self._cutoff(), *after, PAGE])
                page = cur.fetchall()
            for row in page:
                yield _entry(row[1:])
            if len(page) < PAGE:
                return
            after = (page[-1][LINE], page[-1][0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class AsyncPostgresJournal:
    """The write side for the bulk engine: the sync store's COPY in a worker thread, so
    the event loop never waits on PostgreSQL."""

    def __init__(self, store: PostgresJournal) -> None:
        self.store = store

    async def write_many(self, entries: Iterable[JournalEntry]) -> int:
        batch = list(entries)  # materialised here: the thread must not read a generator
        return await asyncio.to_thread(self.store.write_many, batch)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)
