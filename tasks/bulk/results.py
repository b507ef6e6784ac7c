"""What became of a bulk's rows: `bulk_status`, `bulk_failures`, `bulk_cancelled`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from worker.coordination.bulk_records import Keys
from worker.coordination.bulk_status import BulkStatus, read_status

from ..connection import redis_client, redis_errors


def bulk_status(bulk_id: str) -> BulkStatus:
    with redis_errors():
        return read_status(redis_client(), bulk_id)


def _rows_in(key: str, page: int) -> Iterator[dict[str, Any]]:
    with redis_errors():
        client = redis_client()
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
