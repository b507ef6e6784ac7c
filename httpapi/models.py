"""The JSON bodies the API reads and writes, as pydantic models (and so in /openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class UpdateBody(BaseModel):
    # Unknown fields are refused: a typo (`sent`) must not pass as "nothing to change".
    model_config = ConfigDict(extra="forbid")
    # Strict: "false" or 0 from a careless sender must not turn sending on or off.
    send: bool = Field(strict=True, description="Send voicemail by email.")
    email: str = Field(description="Where voicemail is sent.", examples=["vm@acme.ru"])


class Enqueued(BaseModel):
    id: str = Field(description="The job's id: poll it at /v1/jobs/{id}.")


class JobErrorOut(BaseModel):
    type: str = Field(examples=["UserNotFound"])
    message: str


class JobOut(BaseModel):
    """The producer's JobStatus."""

    id: str
    state: str = Field(
        description="PENDING, STARTED, RETRY, SUCCESS or FAILURE",
        examples=["SUCCESS"],
    )
    result: dict[str, Any] | None = Field(
        None, examples=[{"account": "acme", "send": True, "email": "vm@acme.ru"}]
    )
    error: JobErrorOut | None = None


class BulkSubmitted(BaseModel):
    bulk_id: str = Field(description="Follow it at /v1/bulks/{bulk_id}.")


class BulkOut(BaseModel):
    """What `voicemail bulk status` prints; times in ISO 8601 UTC."""

    model_config = ConfigDict(extra="allow")
    bulk_id: str
    state: str = Field(
        description="SUBMITTING, SCHEDULED, RUNNING, PAUSED, DONE, DRY_RUN or CANCELLED"
    )
    total: int
    succeeded: int
    failed: int
    pending: int
    unchanged: int
    cancelled: int
    revertible: bool
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    rate: float
    would_send: int | None = None


class BulkChanged(BulkOut):
    changed: bool = Field(
        description="False when there was nothing to do (cancelling a finished bulk, "
        "pausing a done one, resuming one not paused)."
    )


class FailedRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    line: int | None
    account: str | None = None
    send: bool | str | None = None
    email: str | None = None
    reason: str
