"""Undoing a bulk: `revert_bulk(bulk_id) -> new bulk id`.

A bulk submitted with `revertible=True` wrote, before each PATCH, what the account
held (`before` in its records). Its revert is a new bulk that puts each of those
accounts back, reading it first: an account that still holds what the bulk set is
changed back; one already back is `unchanged`; one changed since by anyone else is left
alone and recorded as failed, with a reason starting `Conflict:`.
"""

from __future__ import annotations

import itertools
import json
import uuid
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

from worker.coordination.bulk_records import BulkRow, Keys
from worker.coordination.bulk_status import read_status
from worker.core.connections import text
from worker.core.errors import NotFound, RevertRefused

from ..connection import redis_client, redis_errors
from .submit import submit_as


def revert_bulk(bulk_id: str, *, new_id: str | None = None) -> str:
    """Start a bulk that puts back every account `bulk_id` changed; returns its id
    (`new_id`, when given: the timed revert's, claimed under that id beforehand)."""
    with redis_errors():
        client = redis_client()
        status = read_status(client, bulk_id)
        if status.state == "UNKNOWN":
            raise NotFound(f"no bulk {bulk_id} (never submitted, or expired)")
        if status.state == "DRY_RUN":
            raise RevertRefused(f"bulk {bulk_id} was a dry run: it changed nothing")
        if not status.revertible:
            raise RevertRefused(
                f"bulk {bulk_id} was not submitted with --revertible: "
                "nothing recorded what its accounts held before"
            )
        if not status.done:
            raise RevertRefused(
                f"bulk {bulk_id} is {status.state}"
                + (f" with {status.pending} rows in flight" if status.state == "CANCELLED" else "")
                + ": cancel it, or let it finish, before reverting it"
            )
        new_id = new_id or uuid.uuid4().hex
        keys = Keys(bulk_id)
        if not client.hsetnx(keys.meta, "reverted_by", new_id):
            earlier = text(client.hget(keys.meta, "reverted_by"))
            raise RevertRefused(f"bulk {bulk_id} already has a revert: {earlier}")
        try:
            return submit_as(new_id, _rows(client, keys), {"reverts": bulk_id})
        except BaseException:
            client.hdel(keys.meta, "reverted_by")  # nothing submitted: it may be tried again
            raise


def _rows(client: Any, keys: Keys, page: int = 1000) -> Iterator[BulkRow]:
    """Every account the bulk may have changed, by line: back to what it held, if it still
    holds what the bulk set."""
    for line, entry in before_entries(client, keys, page):
        if entry is None:
            continue
        account, send, email, new_send, new_email = entry
        yield BulkRow(line, account, bool(send), email, expect=(bool(new_send), new_email))


def before_entries(
    client: Any, keys: Keys, page: int = 1000, also: Iterable[int] = ()
) -> Iterator[tuple[int, Any]]:
    """The bulk's `before` hash, (line, entry or None) in line order, with the lines of
    `also` among them. Only the line numbers are held (8 bytes each, sorted, and once
    each: HSCAN may return a field twice); the entries are read a page at a time."""
    lines = array("q", also)
    for line, _ in client.hscan_iter(keys.before, count=page):
        lines.append(int(line))
    ordered = array("q", (line for line, _ in itertools.groupby(sorted(lines))))
    del lines
    for start in range(0, len(ordered), page):
        batch = ordered[start : start + page].tolist()
        for line, raw in zip(batch, client.hmget(keys.before, batch), strict=True):
            yield line, json.loads(raw) if raw is not None else None
