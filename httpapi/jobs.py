"""Single jobs: enqueue a read or an update of one account, and poll a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from tasks.producer import UNKNOWN, JobStatus, enqueue_get, enqueue_update, poll, wait

from .auth import Caller, may_see, record_owner, redis_of, require_account
from .keystore import ApiKey
from .models import Enqueued, JobOut, UpdateBody
from .problems import Problem, responses

router = APIRouter(prefix="/v1", tags=["jobs"])

AccountName = Annotated[
    str, Path(min_length=1, max_length=200, description="A name in the credential store.")
]
JobId = Annotated[str, Path(min_length=1, max_length=200)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="Sending again with this key queues nothing new and answers the first "
        "id. Keys are this API key's own: another caller's same key is another key.",
    ),
]
MAX_WAIT = 30.0
Reason = Annotated[
    str | None,
    Query(max_length=1000, description="Why: kept in the journal of changes with the change."),
]


def actor_of(key: ApiKey) -> str:
    """The journal's actor for a change asked through this API: the API key's name."""
    return f"api:{key.name}"


def scoped(key: ApiKey, idempotency_key: str | None) -> str | None:
    """The producer's idempotency key for this caller: two services that both pick
    "order-42" must not be handed each other's job."""
    return None if idempotency_key is None else f"http:{key.name}:{idempotency_key}"


def _accepted(request: Request, response: Response, key: ApiKey, job_id: str) -> Enqueued:
    record_owner(redis_of(request), key, job_id)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return Enqueued(id=job_id)


@router.post(
    "/accounts/{account}/reads",
    status_code=202,
    response_model=Enqueued,
    responses=responses(401, 403, 404, 422, 503),
    summary="Read an account's voicemail settings (a voicemail.get job)",
)
def enqueue_read(
    account: AccountName, key: Caller, request: Request, response: Response
) -> Enqueued:
    """Reads change nothing, so a repeated read is harmless and takes no Idempotency-Key."""
    require_account(key, account)
    return _accepted(request, response, key, enqueue_get(account))


@router.post(
    "/accounts/{account}/updates",
    status_code=202,
    response_model=Enqueued,
    responses=responses(401, 403, 404, 422, 503),
    summary="Change an account's voicemail settings (a voicemail.update job)",
)
def enqueue_change(
    account: AccountName,
    body: UpdateBody,
    key: Caller,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    reason: Reason = None,
) -> Enqueued:
    require_account(key, account)
    job_id = enqueue_update(
        account,
        body.send,
        body.email,
        idempotency_key=scoped(key, idempotency_key),
        actor=actor_of(key),
        reason=reason,
    )
    return _accepted(request, response, key, job_id)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses=responses(401, 404, 422, 503),
    summary="A job's state, result or error",
)
def get_job(
    job_id: JobId,
    key: Caller,
    request: Request,
    wait_seconds: Annotated[
        float,
        Query(
            alias="wait",
            ge=0,
            le=MAX_WAIT,
            description="Hold the answer up to this many seconds until the job finishes "
            "(a long poll), instead of answering its state now.",
        ),
    ] = 0.0,
) -> JobOut:
    if not may_see(redis_of(request), key, job_id):
        raise _unknown(job_id)
    status = wait(job_id, timeout=wait_seconds) if wait_seconds > 0 else poll(job_id)
    if status.state == UNKNOWN:
        raise _unknown(job_id)
    return job_out(status)


def _unknown(job_id: str) -> Problem:
    return Problem(404, "UnknownJob", f"no job {job_id[:80]} was enqueued, or its result expired")


def job_out(status: JobStatus) -> JobOut:
    body = status.as_dict()
    return JobOut.model_validate({"result": None, "error": None, **body})
