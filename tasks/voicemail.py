"""Task definitions. Names are a public contract: other services `send_task` by name.

- `voicemail.get(account)` -> `{"account", "email", "send"}`
- `voicemail.update(account, send, email)` -> the same shape, the settings now in force

`voicemail.update` also takes an optional `seq` (the producer API sets it): the
per-account order of updates, see worker.coordination.ordering.
Each job gets what it uses (the API client, the store, Redis) from the worker context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task

from worker.api.models import VoicemailSettings
from worker.api.retry import call_with_retries, requeue_delay
from worker.coordination.ordering import (
    APPLIED,
    LOCKED,
    SUPERSEDED,
    claim_call,
    release_call,
    seq_key,
)
from worker.core.errors import (
    AccountNotFound,
    CredentialError,
    InputError,
    PermanentError,
    TransientError,
)
from worker.core.validation import check_account, check_update
from worker.queue import context
from worker.queue.app import app
from worker.queue.context import WorkerContext

logger = logging.getLogger(__name__)

T = TypeVar("T")


class VoicemailTask(Task):  # type: ignore[type-arg]
    # Expected failures: stored as FAILURE and logged at INFO, without a traceback.
    throws = (PermanentError, InputError, AccountNotFound, CredentialError)

    def log_outcome(
        self, level: int, outcome: str, account: str, started: float, detail: str = ""
    ) -> None:
        """One line per job run, with fields a JSON log (VOICEMAIL_LOG_JSON) keeps apart."""
        latency = (time.perf_counter() - started) * 1000
        attempt = self.request.retries + 1
        logger.log(
            level,
            "job %s account=%s attempt=%d %s in %.1fms%s",
            self.request.id,
            account,
            attempt,
            outcome,
            latency,
            f": {detail}" if detail else "",
            extra={
                "job_id": self.request.id,
                "task": self.name,
                "account": account,
                "attempt": attempt,
                "outcome": outcome,
                "latency_ms": round(latency, 1),
            },
        )

    def call_api(self, account: str, fn: Callable[[], T]) -> T:
        """Short retries in process; if still transient, re-queue with a countdown."""
        config = context.current().settings
        started = time.perf_counter()
        try:
            result = call_with_retries(config, fn)
        except TransientError as exc:
            requeues = self.request.retries
            reason = f"{type(exc).__name__}: {exc}"
            if requeues >= config.requeue_max:
                self.log_outcome(logging.WARNING, "gave up", account, started, reason)
                raise
            countdown = requeue_delay(config, requeues, exc)
            self.log_outcome(
                logging.INFO, f"re-queued for {countdown:.1f}s", account, started, reason
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=config.requeue_max) from None
        except PermanentError as exc:
            self.log_outcome(
                logging.INFO, "failed", account, started, f"{type(exc).__name__}: {exc}"
            )
            raise
        self.log_outcome(logging.INFO, "ok", account, started)
        return result


@app.task(name="voicemail.get", bind=True, base=VoicemailTask)
def get(self: VoicemailTask, account: Any) -> dict[str, Any]:
    name = check_account(account)
    ctx = context.current()
    creds = ctx.store.get(name)
    current: VoicemailSettings = self.call_api(name, lambda: ctx.client.get_voicemail(creds))
    return current.as_result(name)


LOCK_WAIT = 10.0  # seconds a job waits for another update of its account to finish


@app.task(name="voicemail.update", bind=True, base=VoicemailTask)
def update(
    self: VoicemailTask, account: Any, send: Any, email: Any, seq: Any = None
) -> dict[str, Any]:
    name, send_, email_ = check_update(account, send, email)
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise InputError(f"seq must be a positive integer, got {seq!r:.40}")
    ctx = context.current()
    creds = ctx.store.get(name)
    if seq is None:
        # Sent by name without a number: ordered from the moment a worker first sees it.
        seq = int(ctx.redis.incr(seq_key(name)))
        self.request.kwargs = {**(self.request.kwargs or {}), "seq": seq}
    owner = str(self.request.id)
    verdict = _claim(ctx, owner, name, seq)
    if verdict == LOCKED:
        raise self.retry(countdown=1, max_retries=None) from None
    if verdict in (SUPERSEDED, APPLIED):
        logger.info(
            "job %s account=%s seq=%d skipped: %s",
            owner,
            name,
            seq,
            "a later update is already applied" if verdict == SUPERSEDED else "already applied",
        )
        result = VoicemailSettings(email_, send_).as_result(name)
        return {**result, "superseded": True} if verdict == SUPERSEDED else result
    applied = False
    try:
        now_in_force: VoicemailSettings = self.call_api(
            name, lambda: ctx.client.set_voicemail(creds, send_, email_)
        )
        applied = True
    finally:
        keys, args = release_call(owner, [(name, seq, applied)])
        ctx.release(keys=keys, args=args)
    return now_in_force.as_result(name)


def _claim(ctx: WorkerContext, owner: str, account: str, seq: int) -> int:
    """Claim the account for this update, waiting up to LOCK_WAIT for another one to finish."""
    keys, args = claim_call(owner, [(account, seq)])
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        (verdict,) = ctx.claim(keys=keys, args=args)
        if verdict != LOCKED or time.monotonic() > deadline:
            return int(verdict)
        time.sleep(0.05)
