"""What the journal's test modules share: unique names and entries to write."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from worker.coordination.journal import JournalEntry, Outcome, Values, utc_now

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
Make = Callable[..., JournalEntry]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_entry(**fields: object) -> JournalEntry:
    """An entry with plausible values; keywords override any field."""
    base: dict[str, object] = {
        "time": utc_now(),
        "account": "acme",
        "before": Values(send=False, email="old@acme.ru"),
        "after": Values(send=True, email="vm@acme.ru"),
        "actor": "ops@acme.ru",
        "reason": "ticket 19",
        "outcome": Outcome.APPLIED,
        "job_id": str(uuid.uuid4()),
    }
    if "bulk_id" in fields:
        base.pop("job_id")
    return JournalEntry(**{**base, **fields})  # type: ignore[arg-type]
