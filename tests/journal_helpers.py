"""What the journal's test modules share: unique names and entries to write."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable

import psycopg
import pytest

from worker.coordination.journal import JournalEntry, Outcome, Values, utc_now

# The PostgreSQL our machines run; VOICEMAIL_TEST_POSTGRES_URL names another.
PG_URL = os.environ.get(
    "VOICEMAIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
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


def postgres_url() -> str:
    """PG_URL when it answers, else a pgserver of our own; skips when there is neither."""
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
        return PG_URL
    except psycopg.OperationalError as exc:
        if importlib.util.find_spec("pgserver") is None:
            pytest.skip(f"no PostgreSQL at {PG_URL} ({exc}) and pgserver is not installed")
        import pgserver

        server = pgserver.get_server(f"/tmp/voicemail-pg-{uuid.uuid4().hex[:8]}")
        return str(server.get_uri())
