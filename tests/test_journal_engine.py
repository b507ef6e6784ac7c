"""The bulk engine's journal writes: a chunk's entries travel in the pipeline that records
its rows' outcomes, and a journal that cannot be written never holds the outcomes back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
import redis
import redis.asyncio.client as aioclient

from simulator import stack
from worker.coordination.bulk_records import RECORD_SCRIPT, BulkRow, Keys
from worker.coordination.journal import JournalEntry, RedisJournal
from worker.coordination.journal_redis import WRITE_SHA
from worker.core.settings import load_settings
from worker.engine import chunk_run as engine_chunk
from worker.engine.engine_context import EngineContext

RECORD_SHA = hashlib.sha1(RECORD_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names it so


def a_bulk(redis_client: redis.Redis, count: int, **meta: str) -> tuple[str, list[BulkRow]]:
    rows = [BulkRow(i + 2, f"je-{uuid.uuid4().hex[:8]}", True, "x@e.ru", 0) for i in range(count)]
    keys = Keys(uuid.uuid4().hex)
    fields: dict[str, str | int] = {"created_at": "1", "total": count, **meta}
    redis_client.hset(keys.meta, mapping=fields)  # type: ignore[arg-type]
    redis_client.set(keys.chunk(0), json.dumps([row.to_json() for row in rows]))
    return keys.bulk_id, rows


def run_chunk(settings: Any, bulk_id: str, journal: Any = None) -> Any:
    async def run() -> Any:
        ctx = EngineContext(settings)
        if journal is not None:
            ctx.journal = journal
        try:
            return await engine_chunk.process_chunk(
                ctx, bulk_id, 0, final=False, lock_owner="test:journal"
            )
        finally:
            await ctx.aclose()

    return asyncio.run(run())


@pytest.fixture
def sent_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row applied at once, without the API: the journal is what is under test."""

    async def apply(ctx: Any, row: Any, blob: Any, *flags: bool, **hooks: Any) -> str:
        return "s"

    monkeypatch.setattr(engine_chunk, "apply_row", apply)


@pytest.mark.usefixtures("sent_rows")
def test_a_chunks_entries_go_with_its_outcomes_in_one_round_trip(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, simulator: stack.Service
) -> None:
    bulk_id, rows = a_bulk(redis_client, 5, actor="ops@acme.ru", reason="ticket 19")
    pipelines: list[list[str]] = []
    real = aioclient.Pipeline.execute

    async def execute(self: aioclient.Pipeline, raise_on_error: bool = True) -> Any:
        pipelines.append([str(args[1]) for args, _ in self.command_stack if args[0] == "EVALSHA"])
        return await real(self, raise_on_error)

    monkeypatch.setattr(aioclient.Pipeline, "execute", execute)
    settings = load_settings(PLUSOFON_API_URL=simulator.url, VOICEMAIL_BULK_PROCESSES=0)
    report = run_chunk(settings, bulk_id)
    assert report.succeeded == 5
    assert [RECORD_SHA, WRITE_SHA] in pipelines  # the outcomes and their entries, together
    entries = list(RedisJournal(redis_client, 90).bulk_entries(bulk_id))
    assert [(e.line, e.account) for e in entries] == [(r.line, r.account) for r in rows]
    assert {(e.actor, e.reason, e.outcome.value) for e in entries} == {
        ("ops@acme.ru", "ticket 19", "applied")
    }


class Unreachable:
    """A journal whose store is down (PostgreSQL stopped, say)."""

    async def write_many(self, entries: Iterable[JournalEntry]) -> int:
        raise OSError("connection refused")

    async def aclose(self) -> None:
        return None


@pytest.mark.usefixtures("sent_rows")
def test_a_journal_that_cannot_be_written_holds_no_row_back(
    redis_client: redis.Redis, simulator: stack.Service
) -> None:
    bulk_id, _ = a_bulk(redis_client, 5)
    settings = load_settings(PLUSOFON_API_URL=simulator.url, VOICEMAIL_BULK_PROCESSES=0)
    report = run_chunk(settings, bulk_id, journal=Unreachable())
    assert (report.succeeded, report.failed, report.transient) == (5, 0, 0)
    assert redis_client.hget(Keys(bulk_id).meta, "finished_at") is not None
    assert list(RedisJournal(redis_client, 90).bulk_entries(bulk_id)) == []
