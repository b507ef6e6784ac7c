"""The bulk engine (inline, real Redis and simulator): a chunk delivered twice never sends a
row twice, and a row that fails unexpectedly stops the rest of its chunk."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis

from simulator import stack
from tasks.producer import credential_store
from worker.coordination.bulk_records import BulkRow, Keys
from worker.core.settings import load_settings
from worker.engine import chunk_run as engine_chunk
from worker.engine.chunk_run import process_chunk
from worker.engine.engine_context import EngineContext
from worker.engine.pool import Engine

from .conftest import ISSUED_TOKENS


@pytest.mark.integration
def test_redelivered_chunk_is_not_resent(
    simulator: stack.Service, sim: stack.SimulatorControl, redis_client: redis.Redis
) -> None:
    names = [f"engine-{uuid.uuid4().hex[:8]}-{i}" for i in range(5)]
    for name in names:
        ISSUED_TOKENS.append(f"tok-{name}")
        sim.add_accounts([{"account": name, "token": f"tok-{name}"}])
        credential_store().put(name, f"tok-{name}")
    keys = Keys(uuid.uuid4().hex)
    chunk = json.dumps(
        [BulkRow(i + 2, n, True, f"{n}@e.ru").to_json() for i, n in enumerate(names)]
    )
    redis_client.hset(keys.meta, mapping={"created_at": "1", "total": len(names)})
    redis_client.set(keys.chunk(0), chunk)
    settings = load_settings(PLUSOFON_API_URL=simulator.url, VOICEMAIL_BULK_PROCESSES=0)
    engine = Engine(settings)
    bulk_id = keys.meta.split("{")[1].rstrip("}")

    first = engine.run_chunk(bulk_id, 0, final=False)
    assert (first.succeeded, first.skipped, first.missing) == (5, 0, False)
    assert redis_client.get(keys.chunk(0)) is None  # cleaned up once every row is recorded

    # Redelivered after clean-up: nothing to do.
    assert engine.run_chunk(bulk_id, 0, final=False).missing

    # Redelivered before clean-up (the worker died between recording and deleting):
    redis_client.set(keys.chunk(0), chunk)

    async def again() -> int:
        ctx = EngineContext(settings)
        try:
            return (
                await process_chunk(ctx, bulk_id, 0, final=False, lock_owner="test:again")
            ).skipped
        finally:
            await ctx.aclose()

    assert asyncio.run(again()) == 5
    assert all(sim.account(n)["patches"] == 1 for n in names)
    assert redis_client.hget(keys.meta, "finished_at") is not None


# Issue 18, finding 9: a poison row fails alone, with its reason; its siblings go on.


def test_an_unexpected_row_error_fails_that_row_alone(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, simulator: stack.Service
) -> None:
    rows = [BulkRow(i + 2, f"tg-{uuid.uuid4().hex[:6]}", True, "x@e.ru", 0) for i in range(5)]
    keys = Keys(uuid.uuid4().hex)
    redis_client.hset(keys.meta, mapping={"created_at": "1", "total": len(rows)})
    redis_client.set(keys.chunk(0), json.dumps([row.to_json() for row in rows]))

    async def apply(ctx: Any, row: Any, blob: Any, *flags: bool, **guard: Any) -> str:
        if row.line == 2:  # as aiohttp refuses a header: its text quotes the value
            raise ValueError("Newline or carriage return detected in headers: Bearer tok-x\n")
        return "s"

    monkeypatch.setattr(engine_chunk, "apply_row", apply)
    settings = load_settings(PLUSOFON_API_URL=simulator.url, VOICEMAIL_BULK_PROCESSES=0)
    bulk_id = keys.meta.split("{")[1].rstrip("}")

    async def run() -> Any:
        ctx = EngineContext(settings)
        try:
            return await engine_chunk.process_chunk(
                ctx, bulk_id, 0, final=False, lock_owner="test:poison"
            )
        finally:
            await ctx.aclose()

    report = asyncio.run(run())
    assert (report.failed, report.succeeded, report.transient) == (1, 4, 0)
    (failure,) = [json.loads(f) for f in redis_client.lrange(keys.failures, 0, -1)]
    assert failure["line"] == 2
    assert failure["reason"].startswith("ValueError: Newline or carriage return")
    assert "tok-x" not in failure["reason"]
