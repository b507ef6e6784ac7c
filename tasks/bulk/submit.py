"""Submitting a bulk: `submit_bulk`, `retry_bulk` (what became of it: `results`).

Rows are streamed: checked, de-duplicated and cut into chunks of
`VOICEMAIL_BULK_CHUNK_SIZE` as they arrive, each chunk stored in Redis and queued
as one `voicemail.bulk_chunk` task (tasks.chunk); the producer never holds more than a chunk
(but for a bulk in waves, coordination.waves).
A bad row is recorded as failed with its line number and reason; the rest run. A bulk
of more than `VOICEMAIL_BULK_MAX_ROWS` rows stops at the cap, is cancelled, and raises.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Unpack

from redis.typing import EncodableT, FieldT

from worker.coordination.bulk_control import park
from worker.coordination.bulk_records import (
    RECORD_SCRIPT,
    BulkRow,
    Keys,
    Outcome,
    RowError,
    line_runs,
    record_args,
)
from worker.coordination.ordering import Ordering
from worker.coordination.waves import Cuts, Rollout, Segments, batches, segmented
from worker.coordination.waves import options as wave_options
from worker.core.connections import text as _text
from worker.core.errors import InputError
from worker.core.keys import ACCOUNTS, BULKS
from worker.core.settings import get_settings
from worker.core.validation import check_update
from worker.queue import notify as _notify

from ..connection import credential_store, current, once, redis_client, redis_errors
from ..idempotency import BULK_LEASE
from .lifecycle import cancel_bulk
from .results import bulk_cancelled, bulk_failures
from .rows import normalize
from .schedule import Duration, When, enter_schedule, schedule_fields
from .who import reason_checked, who_fields

logger = logging.getLogger(__name__)


def submit_bulk(
    rows: Iterable[Any],
    *,
    dry_run: bool = False,
    only_changed: bool = False,
    revertible: bool = False,
    notify: str | None = None,
    notify_queue: str | None = None,
    idempotency_key: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    at: When | None = None,
    revert_after: Duration | None = None,
    **rollout: Unpack[Rollout],
) -> str:
    """Check and queue `rows` (each with account, send, email); returns the bulk id.

    `revertible`: read each account first (as `only_changed`) and keep what it held, so
    `revert_bulk` can put it back. `notify`: the name of a Celery task sent, with the
    bulk's status, to `notify_queue` (default `voicemail.notify`) once the bulk settles.
    With `idempotency_key`, submitting again returns the first bulk's id and queues nothing.
    `at` (ISO 8601 with an offset, `+30m`, an aware datetime or an epoch time): the bulk is
    SCHEDULED and sends nothing before then. `revert_after` (`20s`, `2h`, or seconds;
    implies `revertible`): once the bulk settles, it is reverted that much later.
    `rollout`: `waves`, `wave_pause`, `max_failures`, `min_sample`, as the options of
    `voicemail bulk submit` (worker.coordination.waves).
    `actor` (default `$USER@host`) and `reason` go to every row's journal entry.
    """
    options = bulk_options(
        dry_run=dry_run,
        only_changed=only_changed,
        revertible=revertible,
        notify=notify,
        notify_queue=notify_queue,
        at=at,
        revert_after=revert_after,
        **rollout,
    )
    options.update(who_fields(actor, reason))
    bulk_id = uuid.uuid4().hex
    return submit_once(idempotency_key, bulk_id, lambda: submit_as(bulk_id, rows, options))


def submit_once(key: str | None, bulk_id: str, submit: Callable[[], str]) -> str:
    """`submit()` (which submits bulk `bulk_id`), once per idempotency `key`: submitting
    again with it returns the first bulk's id and queues nothing."""
    with redis_errors(), once(key, bulk_id, lease=BULK_LEASE) as claimed:
        if isinstance(claimed, str):
            return claimed
        if claimed is not None and claimed.took_over:
            # Its submitter died mid-stream: what it queued stops, this bulk sends it all.
            cancel_bulk(claimed.took_over)
        if claimed is None:
            return submit()
        with claimed.kept_alive(bulk_id):
            return submit()


class BulkOptions(Rollout, total=False):
    """`submit_bulk`'s options, for the functions that take them along (`apply_plan`)."""

    dry_run: bool
    only_changed: bool
    revertible: bool
    notify: str | None
    notify_queue: str | None
    at: When | None
    revert_after: Duration | None


def bulk_options(
    *,
    dry_run: bool = False,
    only_changed: bool = False,
    revertible: bool = False,
    notify: str | None = None,
    notify_queue: str | None = None,
    at: When | None = None,
    revert_after: Duration | None = None,
    **rollout: Unpack[Rollout],
) -> dict[FieldT, EncodableT]:
    """The bulk record's fields for `submit_bulk`'s options, checked."""
    options: dict[FieldT, EncodableT] = {
        "dry_run": int(dry_run),
        "only_changed": int(only_changed),
        "revertible": int(revertible),
    }
    options.update(_notify.checked_options(notify, notify_queue))
    options.update(schedule_fields(at, revert_after, dry_run=dry_run))
    options.update(wave_options(**rollout))
    return options


def submit_as(bulk_id: str, rows: Iterable[Any], options: dict[FieldT, EncodableT]) -> str:
    """Submit `rows` as bulk `bulk_id`, with `options` (flags, notify, reverts) in its
    record; `submit_bulk` and `revert_bulk` both end here."""
    settings = get_settings()
    keys = Keys(bulk_id)
    ttl = settings.result_expires
    dry_run = bool(options.get("dry_run"))
    # A bulk that only reads takes no update number: it neither waits for an account's
    # lock nor is ever superseded; it reads what the account holds when it gets there.
    numbered = not (options.get("verify") or options.get("plan"))
    rows = reason_checked(rows, options, settings.reason_required_rows)
    with redis_errors():
        client = redis_client()
        record = client.register_script(RECORD_SCRIPT)
        meta: dict[FieldT, EncodableT] = {"created_at": repr(time.time()), "rows": 0, **options}
        rows, segments = segmented(rows, options)
        meta.update(segments.fields() if segments else {})
        client.hset(keys.meta, mapping=meta)
        enter_schedule(client, bulk_id, options)  # a bulk with a time (`at`) waits for it
        # An index of recent bulks, for `voicemail metrics`; old entries pruned as we go.
        now = time.time()
        client.zadd(BULKS, {bulk_id: now})
        client.zremrangebyscore(BULKS, 0, now - ttl)
        # No TTL on the bulk's keys until it settles (record_outcomes.lua): a chunk queued
        # behind a slow bulk must find its rows.
        total, chunks, would_send, over = _stream(client, keys, rows, numbered, dry_run, segments)
        if over:  # nothing more of it is sent: its queued chunks record rows as cancelled
            cancel_bulk(bulk_id)
        final: dict[FieldT, EncodableT] = {"total": total, "chunks": chunks}
        if dry_run:
            final["would_send"] = would_send
        client.hset(keys.meta, mapping=final)
        client.delete(keys.seen)  # no row comes any more: the duplicate check is done
        # Stamps finished_at if workers already recorded every row.
        record(keys=keys.record_keys(), args=record_args([], ttl))
        _notify.drain(client, current().app)
    if over:
        raise InputError(
            f"bulk {bulk_id} has more than {settings.bulk_max_rows} rows "
            f"(VOICEMAIL_BULK_MAX_ROWS): cancelled after {total}; split the file"
        )
    logger.info("bulk %s: %d rows in %d chunks", bulk_id, total, chunks)
    return bulk_id


def _stream(
    client: Any,
    keys: Keys,
    rows: Iterable[Any],
    numbered: bool,
    dry_run: bool,
    segments: Segments | None = None,
) -> tuple[int, int, int, bool]:
    """Check, record and queue the rows as they come: (rows accepted, chunks queued, rows
    a dry run would send, whether reading stopped at `VOICEMAIL_BULK_MAX_ROWS`), no
    chunk across the end of one of the bulk's `segments` (coordination.waves)."""
    settings = get_settings()
    size, ttl = settings.bulk_chunk_size, settings.result_expires
    record = client.register_script(RECORD_SCRIPT)
    store = credential_store()
    chunks = total = would_send = 0
    over = False
    pending: list[BulkRow] = []
    cuts = Cuts(client, keys, segments, current().send_chunk)
    for batch in batches(normalize(rows), size, segments):
        if client.hexists(keys.meta, "cancelled_at"):
            break  # cancelled while streaming: `total` is what was accepted so far
        if total + len(batch) > settings.bulk_max_rows:
            over = True  # the rows past the cap are not read; the caller cancels the bulk
            break
        good, bad = _check_batch(client, store, keys, batch, numbered)
        total += len(batch)
        if bad:
            record(keys=keys.record_keys(), args=record_args(bad, ttl))
        client.hincrby(keys.meta, "rows", len(batch))
        if dry_run:
            would_send += len(good)
            continue
        pending.extend(good)
        while len(pending) >= size or (pending and cuts.at_end(total)):
            cuts.queued += len(pending[:size])
            _queue_chunk(client, keys, keys.bulk_id, chunks, pending[:size], cuts)
            del pending[:size]
            chunks += 1
        cuts.passed(total)
    if pending and over:  # accepted, never queued: nothing of them is sent
        held = [
            Outcome.cancelled(r.line, account=r.account, send=r.send, email=r.email)
            for r in pending
        ]
        record(keys=keys.record_keys(), args=record_args(held, ttl))
    elif pending:
        _queue_chunk(client, keys, keys.bulk_id, chunks, pending, cuts)
        chunks += 1
    return total, chunks, would_send, over


def _check_batch(
    client: Any, store: Any, keys: Keys, batch: Iterable[BulkRow | RowError], numbered: bool
) -> tuple[list[BulkRow], list[Outcome]]:
    """The good rows (numbered, when they may write: `coordination.ordering`) and the
    outcomes of the bad ones."""
    bad: list[Outcome] = []
    candidates: list[BulkRow] = []
    for item in batch:
        if isinstance(item, RowError):
            bad.append(Outcome.invalid(item.line, item.reason, **item.raw))
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
            pipe.hexists(ACCOUNTS, row.account)
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
    if good and numbered:
        first = Ordering(client).next_seq(len(good))
        good = [dataclasses.replace(row, seq=first + i) for i, row in enumerate(good)]
    return good, bad


def _failed(row: BulkRow, reason: str) -> Outcome:
    return Outcome.invalid(row.line, reason, account=row.account, send=row.send, email=row.email)


def _queue_chunk(
    client: Any, keys: Keys, bulk_id: str, number: int, rows: list[BulkRow], cuts: Cuts
) -> None:
    """Store a chunk's rows (kept, like every key of the bulk, until it settles) and its
    lines (so a chunk whose rows are lost fails them by line), then queue its task, or
    hold it until its wave starts (`cuts`)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.set(
            keys.chunk(number), json.dumps([row.to_json() for row in rows], ensure_ascii=False)
        )
        pipe.hset(keys.lines, number, line_runs(row.line for row in rows))
        pipe.hset(keys.meta, "chunks", number + 1)
        pipe.execute()
    # A chunk of a wave not started waits held (`cuts`); one of a bulk that waits
    # (SCHEDULED, or paused meanwhile) waits parked, as a worker would park it: its start
    # (or resume) queues it (coordination.bulk_control).
    if not cuts.hold(number) and not park(client, bulk_id, number, 0):
        current().send_chunk(bulk_id, number, what=f"{len(rows)} accounts of bulk {bulk_id}")


def retry_bulk(bulk_id: str) -> str:
    """Submit the failed and cancelled rows of `bulk_id` again, as a new bulk with the
    same options; returns its id. (A revert's rows keep what they expect to find.)"""
    with redis_errors():
        flags = redis_client().hmget(Keys(bulk_id).meta, list(RETRIED_OPTIONS))
    options: dict[FieldT, EncodableT] = {
        k: _text(v) for k, v in zip(RETRIED_OPTIONS, flags, strict=True) if v is not None
    }
    rows = itertools.chain(bulk_failures(bulk_id), bulk_cancelled(bulk_id))
    with redis_errors():
        return submit_as(uuid.uuid4().hex, rows, {"dry_run": 0, **options})


# A retry keeps what the bulk was: a verify or a plan stays read-only, a revert's and an
# applied plan's rows keep what they expect to find.
RETRIED_OPTIONS = (
    *("only_changed", "revertible", "reverts", "verify", "plan", "applies"),
    *("notify", "notify_queue", "actor", "reason"),
    # Undone on the same timer as its bulk: what the retry changes is reverted DURATION
    # after the retry settles (coordination.schedule). A start time (`--at`) is past.
    "revert_after",
    # A retry is guarded, and rolled out, as its bulk was (coordination.waves).
    *("waves_spec", "wave_pause", "max_failures", "fail_rows", "fail_pct", "min_sample"),
)
