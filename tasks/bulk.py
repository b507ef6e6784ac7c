"""Bulk updates, the producer side: `submit_bulk`, `bulk_status`, `bulk_failures`, `retry_bulk`,
`cancel_bulk`.

    from tasks.bulk import submit_bulk, bulk_status
    bulk_id = submit_bulk([{"account": "acme", "send": True, "email": "vm@acme.ru"}, ...])
    bulk_status(bulk_id).summary()
    # {"bulk_id": ..., "state": "DONE", "total": 2, "succeeded": 2, "failed": 0, "pending": 0}

Rows are streamed: checked, de-duplicated and cut into chunks of
`VOICEMAIL_BULK_CHUNK_SIZE` as they arrive, each chunk stored in Redis and queued
as one `voicemail.bulk_chunk` task (tasks.chunk); the producer never holds more than a chunk.
A bad row is recorded as failed with its line number and reason; the rest run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from redis.typing import EncodableT, FieldT

from worker.coordination.bulk_records import (
    RATE_WINDOW,
    RECORD_SCRIPT,
    BulkRow,
    BulkStatus,
    Keys,
    Outcome,
    RowError,
    record_args,
    status_from,
)
from worker.coordination.ordering import next_seq
from worker.core import constants as C
from worker.core.connections import text as _text
from worker.core.errors import InputError
from worker.core.settings import get_settings
from worker.core.validation import check_update, parse_send
from worker.queue.app import BULK_QUEUE, CHUNK_TASK, app

from .producer import _client, _redis_errors, credential_store, once

logger = logging.getLogger(__name__)


def _normalize(rows: Iterable[Any]) -> Iterator[BulkRow | RowError]:
    """Accept BulkRow / RowError from the readers, or plain mappings from Python callers."""
    for number, row in enumerate(rows, start=1):
        if isinstance(row, BulkRow | RowError):
            yield row
        elif isinstance(row, Mapping):
            line = int(row.get("line") or number)
            raw = {k: row.get(k) for k in ("account", "send", "email")}
            try:
                send = parse_send(row.get("send"))
            except InputError as exc:
                yield RowError(line, str(exc), raw)
                continue
            yield BulkRow(line, row.get("account"), send, row.get("email"))  # type: ignore[arg-type]
        else:
            yield RowError(number, f"a row must be a mapping, got {type(row).__name__}")


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    # itertools.batched arrived in Python 3.12; we support 3.11.
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def submit_bulk(
    rows: Iterable[Any],
    *,
    dry_run: bool = False,
    only_changed: bool = False,
    idempotency_key: str | None = None,
) -> str:
    """Check and queue `rows` (each with account, send, email); returns the bulk id.

    With `idempotency_key`, submitting again returns the first bulk's id and queues nothing.
    """
    bulk_id = uuid.uuid4().hex
    with _redis_errors(), once(idempotency_key, bulk_id) as existing:
        if existing is not None:
            return existing
        return _submit(bulk_id, rows, dry_run=dry_run, only_changed=only_changed)


def _submit(bulk_id: str, rows: Iterable[Any], *, dry_run: bool, only_changed: bool) -> str:
    settings = get_settings()
    keys = Keys(bulk_id)
    ttl = settings.result_expires
    with _redis_errors():
        client = _client()
        record = client.register_script(RECORD_SCRIPT)
        store = credential_store()
        meta: dict[FieldT, EncodableT] = {
            "created_at": repr(time.time()),
            "rows": 0,
            "dry_run": int(dry_run),
            "only_changed": int(only_changed),
        }
        client.hset(keys.meta, mapping=meta)
        # An index of recent bulks, for `voicemail metrics`; old entries pruned as we go.
        now = time.time()
        client.zadd(C.BULKS_KEY, {bulk_id: now})
        client.zremrangebyscore(C.BULKS_KEY, 0, now - ttl)
        client.expire(keys.meta, ttl)
        chunks = total = would_send = 0
        pending: list[BulkRow] = []
        for batch in _batched(_normalize(rows), settings.bulk_chunk_size):
            if client.hexists(keys.meta, "cancelled_at"):
                break  # cancelled while streaming: `total` is what was accepted so far
            good, bad = _check_batch(client, store, keys, batch)
            total += len(batch)
            if bad:
                record(keys=keys.record_keys(), args=record_args(bad, ttl))
            client.hincrby(keys.meta, "rows", len(batch))
            if dry_run:
                would_send += len(good)
                continue
            pending.extend(good)
            while len(pending) >= settings.bulk_chunk_size:
                _queue_chunk(client, keys, bulk_id, chunks, pending[: settings.bulk_chunk_size])
                del pending[: settings.bulk_chunk_size]
                chunks += 1
        if pending:
            _queue_chunk(client, keys, bulk_id, chunks, pending)
            chunks += 1
        final: dict[FieldT, EncodableT] = {"total": total, "chunks": chunks}
        if dry_run:
            final["would_send"] = would_send
        client.hset(keys.meta, mapping=final)
        client.expire(keys.seen, ttl)
        # Stamps finished_at if workers already recorded every row.
        record(keys=keys.record_keys(), args=record_args([], ttl))
    logger.info("bulk %s: %d rows in %d chunks", bulk_id, total, chunks)
    return bulk_id


def _check_batch(
    client: Any, store: Any, keys: Keys, batch: Iterable[BulkRow | RowError]
) -> tuple[list[BulkRow], list[Outcome]]:
    bad: list[Outcome] = []
    candidates: list[BulkRow] = []
    for item in batch:
        if isinstance(item, RowError):
            bad.append(Outcome.failed(item.line, item.reason, **item.raw))
            continue
        try:
            check_update(item.account, item.send, item.email)
        except InputError as exc:
            bad.append(_failed(item, f"InputError: {exc}"))
            continue
        candidates.append(item)
    if not candidates:
        return [], bad
    with client.pipeline(transaction=False) as pipe:
        for row in candidates:
            pipe.hexists(C.ACCOUNTS_KEY, row.account)
            pipe.hsetnx(keys.seen, row.account, row.line)
        answers = pipe.execute()
    exists, fresh = answers[0::2], answers[1::2]
    repeated = [row.account for row, new in zip(candidates, fresh, strict=True) if not new]
    first_lines = (
        dict(zip(repeated, client.hmget(keys.seen, repeated), strict=True)) if repeated else {}
    )
    good: list[BulkRow] = []
    for row, known, new in zip(candidates, exists, fresh, strict=True):
        if not new:
            line = _text(first_lines[row.account])
            bad.append(_failed(row, f"account {row.account!r} already given on line {line}"))
        elif not known and not store.exists_env(row.account):
            bad.append(
                _failed(
                    row, f"AccountNotFound: account {row.account!r} is not in the credential store"
                )
            )
        else:
            good.append(row)
    if good:
        first = next_seq(client, len(good))
        good = [dataclasses.replace(row, seq=first + i) for i, row in enumerate(good)]
    return good, bad


def _failed(row: BulkRow, reason: str) -> Outcome:
    return Outcome.failed(row.line, reason, account=row.account, send=row.send, email=row.email)


def _queue_chunk(client: Any, keys: Keys, bulk_id: str, number: int, rows: list[BulkRow]) -> None:
    client.set(
        keys.chunk(number),
        json.dumps([row.to_json() for row in rows], ensure_ascii=False),
        ex=get_settings().result_expires,
    )
    app.send_task(
        CHUNK_TASK,
        args=[bulk_id, number],
        queue=BULK_QUEUE,
        argsrepr=f"{len(rows)} accounts of bulk {bulk_id} (chunk {number})",
    )


def bulk_status(bulk_id: str) -> BulkStatus:
    keys = Keys(bulk_id)
    now = time.time()
    seconds = [str(s) for s in range(int(now) - RATE_WINDOW, int(now))]
    with _redis_errors():
        client = _client()
        meta = {_text(k): _text(v) for k, v in client.hgetall(keys.meta).items()}
        counts = client.hmget(keys.rate, seconds)
    rate = {s: _text(c) for s, c in zip(seconds, counts, strict=True) if c is not None}
    return status_from(bulk_id, meta, rate, now)


def _rows_in(key: str, page: int) -> Iterator[dict[str, Any]]:
    with _redis_errors():
        client = _client()
        for start in itertools.count(0, page):
            items = client.lrange(key, start, start + page - 1)
            for item in items:
                yield json.loads(item)
            if len(items) < page:
                return


def bulk_failures(bulk_id: str, page: int = 1000) -> Iterator[dict[str, Any]]:
    """The failed rows, each `{line, account, send, email, reason}`, in the order recorded."""
    return _rows_in(Keys(bulk_id).failures, page)


def bulk_cancelled(bulk_id: str, page: int = 1000) -> Iterator[dict[str, Any]]:
    """The rows a cancel kept from being sent, in the same shape as `bulk_failures`."""
    return _rows_in(Keys(bulk_id).cancelled, page)


def retry_bulk(bulk_id: str) -> str:
    """Submit the failed and cancelled rows of `bulk_id` again, as a new bulk; returns its id."""
    with _redis_errors():
        only_changed = _client().hget(Keys(bulk_id).meta, "only_changed") == b"1"
    rows = itertools.chain(bulk_failures(bulk_id), bulk_cancelled(bulk_id))
    return submit_bulk(rows, only_changed=only_changed)


def cancel_bulk(bulk_id: str) -> BulkStatus:
    """Stop a bulk: within a second no worker starts another request for it; requests in
    flight finish. Rows never sent are counted as `cancelled`. Returns its status (a
    finished or unknown bulk is left as it is)."""
    status = bulk_status(bulk_id)
    if status.state in ("RUNNING", "SUBMITTING"):
        keys = Keys(bulk_id)
        with _redis_errors():
            client = _client()
            client.hsetnx(keys.meta, "cancelled_at", repr(time.time()))
            # Every row may have been recorded by now: stamp finished_at in that case.
            client.register_script(RECORD_SCRIPT)(
                keys=keys.record_keys(), args=record_args([], get_settings().result_expires)
            )
        status = bulk_status(bulk_id)
    return status
