"""Bulks: submit a CSV or JSON Lines body, follow it, list its failures, cancel, pause
and resume it. The body is read as `voicemail bulk submit` reads a file
(cli.row_files.read_rows): a bad row is recorded as failed with its line, the rest run."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from cli.row_files import read_rows
from tasks.bulk import BulkStatus, bulk_failures, bulk_status, change_bulk, submit_bulk
from worker.coordination.bulk_records import BulkRow, RowError

from .auth import Caller, may_see, record_owner, redis_of
from .jobs import IdempotencyKey, Reason, actor_of, scoped
from .keystore import ApiKey
from .models import BulkChanged, BulkOut, BulkSubmitted, FailedRow
from .problems import Problem, responses

router = APIRouter(prefix="/v1/bulks", tags=["bulks"])
BulkId = Annotated[str, Path(min_length=1, max_length=200)]

# Media type -> the reader's format; "auto" sniffs the first line, as for stdin.
FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/json-lines": "jsonl",
    "text/plain": "auto",
}
# The body is held in memory while its rows stream into Redis: 64 MiB is about a million
# rows of CSV. Larger files go in several bulks (or through `voicemail bulk submit`).
MAX_BODY_BYTES = 64 * 1024 * 1024
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "Header account,send,email (CSV) or one JSON object a line.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/jsonl": {"schema": {"type": "string"}},
        },
    }
}


def _format_of(content_type: str | None) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in FORMATS:
        raise Problem(
            415,
            "UnsupportedMediaType",
            f"send the rows as text/csv or application/x-ndjson, not {media or 'nothing'!r}",
        )
    return FORMATS[media]


async def _body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it outgrows MAX_BODY_BYTES."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Problem(413, "ContentTooLarge", f"a bulk body is at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _within(key: ApiKey, rows: Iterable[BulkRow | RowError]) -> Iterator[BulkRow | RowError]:
    """A row for an account outside the key's glob fails on its own, as any bad row does;
    the others run."""
    for row in rows:
        if isinstance(row, BulkRow) and not key.allows(row.account):
            reason = f"Forbidden: API key {key.name!r} may not use account {row.account!r}"
            raw = {"account": row.account, "send": row.send, "email": row.email}
            yield RowError(row.line, reason, raw)
        else:
            yield row


def _rollout(
    waves: Annotated[str | None, Query(description="Cumulative wave sizes: 1%,10%,100%.")] = None,
    wave_pause: Annotated[bool, Query(description="Pause after each wave but the last.")] = False,
    max_failures: Annotated[
        str | None, Query(description="Pause itself past N, or P%, failed rows.")
    ] = None,
    min_sample: Annotated[int | None, Query(description="Settled rows first (20).")] = None,
    at: Annotated[str | None, Query(description="Start then: ISO 8601, or +30m.")] = None,
    revert_after: Annotated[
        str | None, Query(description="Revert it this long after it settles: 2h.")
    ] = None,
) -> dict[str, Any]:
    """A bulk's rollout and schedule, as `voicemail bulk submit`'s options (docs/bulk.md),
    checked by `submit_bulk`: a bad one is answered 422, naming it. None is its default."""
    return {
        "waves": waves,
        "wave_pause": wave_pause,
        "max_failures": max_failures,
        "min_sample": min_sample,
        "at": at,
        "revert_after": revert_after,
    }


@router.post(
    "",
    status_code=202,
    response_model=BulkSubmitted,
    responses=responses(401, 413, 415, 422, 503),
    summary="Submit a bulk of changes (CSV or JSON Lines)",
    openapi_extra=_BODY_DOC,
)
async def submit(
    request: Request,
    response: Response,
    key: Caller,
    rollout: Annotated[dict[str, Any], Depends(_rollout)],
    idempotency_key: IdempotencyKey = None,
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
    dry_run: Annotated[bool, Query(description="Check every row, send nothing.")] = False,
    only_changed: Annotated[bool, Query(description="Skip accounts already so.")] = False,
    revertible: Annotated[bool, Query(description="Keep what each account held.")] = False,
    reason: Reason = None,
) -> BulkSubmitted:
    fmt = _format_of(content_type)
    body = await _body(request)

    def run() -> str:
        # utf-8-sig and surrogateescape as for a file: bad bytes make one bad row.
        text = io.TextIOWrapper(
            io.BytesIO(body), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        return submit_bulk(
            _within(key, read_rows(text, fmt)),
            dry_run=dry_run,
            only_changed=only_changed,
            revertible=revertible,
            idempotency_key=scoped(key, idempotency_key),
            actor=actor_of(key),
            reason=reason,
            **rollout,
        )

    # Checking rows talks to Redis for every chunk: off the event loop.
    bulk_id = await run_in_threadpool(run)
    await run_in_threadpool(record_owner, redis_of(request), key, bulk_id)
    response.headers["Location"] = f"/v1/bulks/{bulk_id}"
    return BulkSubmitted(bulk_id=bulk_id)


def _known(request: Request, key: ApiKey, bulk_id: str) -> BulkStatus:
    status = bulk_status(bulk_id) if may_see(redis_of(request), key, bulk_id) else None
    if status is None or status.state == "UNKNOWN":
        raise Problem(404, "UnknownBulk", f"no bulk {bulk_id[:80]} (never submitted, or expired)")
    return status


@router.get(
    "/{bulk_id}",
    response_model=BulkOut,
    responses=responses(401, 404, 503),
    summary="A bulk's progress, as `voicemail bulk status` prints it",
)
def status(bulk_id: BulkId, key: Caller, request: Request) -> dict[str, Any]:
    return _known(request, key, bulk_id).as_dict()


@router.get(
    "/{bulk_id}/failures",
    response_model=list[FailedRow],
    responses=responses(401, 404, 422, 503),
    summary="The failed rows, in the order recorded",
)
def failures(
    bulk_id: BulkId,
    key: Caller,
    request: Request,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    _known(request, key, bulk_id)
    return list(itertools.islice(bulk_failures(bulk_id), offset, offset + limit))


def _change(
    request: Request, key: ApiKey, bulk_id: str, op: Literal["cancel", "pause", "resume"]
) -> dict[str, Any]:
    _known(request, key, bulk_id)
    changed, after = change_bulk(bulk_id, op)
    return {**after.as_dict(), "changed": changed}


_CHANGE: dict[str, Any] = {"response_model": BulkChanged, "responses": responses(401, 404, 503)}


@router.post("/{bulk_id}/cancel", summary="Stop a bulk; requests in flight finish", **_CHANGE)
def cancel(bulk_id: BulkId, key: Caller, request: Request) -> dict[str, Any]:
    return _change(request, key, bulk_id, "cancel")


@router.post("/{bulk_id}/pause", summary="Hold a bulk until it is resumed", **_CHANGE)
def pause(bulk_id: BulkId, key: Caller, request: Request) -> dict[str, Any]:
    return _change(request, key, bulk_id, "pause")


@router.post("/{bulk_id}/resume", summary="Let a paused bulk go on", **_CHANGE)
def resume(bulk_id: BulkId, key: Caller, request: Request) -> dict[str, Any]:
    return _change(request, key, bulk_id, "resume")
