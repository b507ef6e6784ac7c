"""Task definitions. Names are a public contract: other services `send_task` by name.

- `voicemail.get(account)` -> `{"account", "email", "send"}`
- `voicemail.update(account, send, email)` -> the same shape, the settings now in force

`voicemail.update` also takes an optional `seq` (the producer API sets it): the
per-account order of updates, see worker.ordering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task

from worker.app import app
from worker.client import VoicemailSettings
from worker.errors import (
    AccountNotFound,
    CredentialError,
    InputError,
    PermanentError,
    TransientError,
)
from worker.ordering import (
    APPLIED,
    LOCKED,
    SUPERSEDED,
    claim_call,
    release_call,
    seq_key,
)
from worker.retry import call_with_retries, requeue_delay
from worker.runtime import runtime
from worker.validation import check_account, check_update

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
        settings = runtime().settings
        started = time.perf_counter()
        try:
            result = call_with_retries(settings, fn)
        except TransientError as exc:
            requeues = self.request.retries
            reason = f"{type(exc).__name__}: {exc}"
            if requeues >= settings.requeue_max:
                self.log_outcome(logging.WARNING, "gave up", account, started, reason)
                raise
            countdown = requeue_delay(settings, requeues, exc)
            self.log_outcome(
                logging.INFO, f"re-queued for {countdown:.1f}s", account, started, reason
            )
            raise self.retry(
                exc=exc, countdown=countdown, max_retries=settings.requeue_max
            ) from None
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
    rt = runtime()
    creds = rt.store.get(name)
    settings: VoicemailSettings = self.call_api(name, lambda: rt.client.get_voicemail(creds))
    return settings.as_result(name)


LOCK_WAIT = 10.0  # seconds a job waits for another update of its account to finish


@app.task(name="voicemail.update", bind=True, base=VoicemailTask)
def update(
    self: VoicemailTask, account: Any, send: Any, email: Any, seq: Any = None
) -> dict[str, Any]:
    name, send_, email_ = check_update(account, send, email)
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise InputError(f"seq must be a positive integer, got {seq!r:.40}")
    rt = runtime()
    creds = rt.store.get(name)
    if seq is None:
        # Sent by name without a number: ordered from the moment a worker first sees it.
        seq = int(rt.redis.incr(seq_key(name)))
        self.request.kwargs = {**(self.request.kwargs or {}), "seq": seq}
    owner = str(self.request.id)
    verdict = _claim(rt, owner, name, seq)
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
        settings: VoicemailSettings = self.call_api(
            name, lambda: rt.client.set_voicemail(creds, send_, email_)
        )
        applied = True
    finally:
        keys, args = release_call(owner, [(name, seq, applied)])
        rt.release(keys=keys, args=args)
    return settings.as_result(name)


def _claim(rt: Any, owner: str, account: str, seq: int) -> int:
    """Claim the account for this update, waiting up to LOCK_WAIT for another one to finish."""
    keys, args = claim_call(owner, [(account, seq)])
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        (verdict,) = rt.claim(keys=keys, args=args)
        if verdict != LOCKED or time.monotonic() > deadline:
            return int(verdict)
        time.sleep(0.05)
