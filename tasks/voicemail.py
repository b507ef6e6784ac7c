"""Task definitions. Names are a public contract: other services `send_task` by name.

- `voicemail.get(account)` -> `{"account", "email", "send"}`
- `voicemail.update(account, send, email)` -> the same shape, the settings now in force;
  keyword arguments `actor=` and `reason=` (strings) say who asked and why, for the
  journal of changes (worker.coordination.journal)
- `voicemail.ping()` -> "pong"

`voicemail.update` also takes an optional `seq` (the producer API sets it): the
per-account order of updates, see worker.coordination.ordering.
Each job gets what it uses (the API client, the store, Redis) from the worker context.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Task
from celery.exceptions import Retry

from worker.api.models import Credentials, VoicemailSettings
from worker.api.retry import BeforeRetry, OnFailure, call_with_retries, requeue_delay
from worker.coordination.journal_entry import Outcome
from worker.coordination.journal_rows import Who, change_entry, write_quietly
from worker.coordination.ordering import (
    Release,
    Settled,
    Verdict,
    expired_reason,
    new_lock_owner,
    settled_by,
)
from worker.core import keys
from worker.core.errors import (
    PERMANENT,
    Expired,
    InputError,
    PermanentError,
    PlusofonError,
    TransientError,
)
from worker.core.validation import check_account, check_actor, check_reason, check_update
from worker.queue import context
from worker.queue.app import app
from worker.queue.context import WorkerContext

logger = logging.getLogger(__name__)

T = TypeVar("T")
_signatures: dict[str, inspect.Signature] = {}


class VoicemailTask(Task):  # type: ignore[type-arg]
    # Expected failures: stored as FAILURE and logged at INFO, without a traceback.
    throws = PERMANENT  # never retried (worker.core.errors)
    # Each retry names its own bound: API trouble has VOICEMAIL_REQUEUE_MAX, while lock
    # waits and Redis trouble are unbounded (None here; a None passed to retry() would
    # fall back to Celery's default of 3).
    max_retries = None

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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.check_arguments(args, kwargs)
        try:
            return super().__call__(*args, **kwargs)
        except redis.RedisError as exc:
            # Redis away before anything was applied (an applied change never gets here):
            # a transient trouble, so the job waits and runs again, never FAILURE.
            config = context.current().settings
            countdown = requeue_delay(config, self.request.retries, None)
            logger.warning(
                "job %s: Redis did not answer (%s), re-queued for %.1fs",
                self.request.id,
                exc,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=None) from None

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A by-name sender's missing, extra or unknown arguments are an InputError that
        names them, never a TypeError (and never retried)."""
        signature = _signatures.get(self.name)
        if signature is None:
            signature = _signatures[self.name] = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            params = ", ".join(
                p.name if p.kind is not p.KEYWORD_ONLY else f"{p.name}=" + repr(p.default)
                for p in signature.parameters.values()
            )
            raise InputError(f"{self.name}({params}): {exc}") from None

    def lock_waits(self) -> int:
        """Re-queues spent waiting for another update of the account (not on API trouble)."""
        if not self.request.retries:
            return 0
        return int(context.current().redis.get(_lock_waits_key(str(self.request.id))) or 0)

    def call_api(
        self,
        account: str,
        fn: Callable[[], T],
        *,
        on_failure: OnFailure | None = None,
        before_retry: BeforeRetry | None = None,
    ) -> T:
        """Short retries in process; if still transient, re-queue with a countdown."""
        config = context.current().settings
        started = time.perf_counter()
        try:
            result = call_with_retries(config, fn, on_failure=on_failure, before_retry=before_retry)
        except TransientError as exc:
            waits = self.lock_waits()
            requeues = self.request.retries - waits
            reason = f"{type(exc).__name__}: {exc}"
            if requeues >= config.requeue_max:
                self.log_outcome(logging.WARNING, "gave up", account, started, reason)
                raise
            countdown = requeue_delay(config, requeues, exc)
            self.log_outcome(
                logging.INFO, f"re-queued for {countdown:.1f}s", account, started, reason
            )
            raise self.retry(
                exc=exc, countdown=countdown, max_retries=config.requeue_max + waits
            ) from None
        except PermanentError as exc:
            self.log_outcome(
                logging.INFO, "failed", account, started, f"{type(exc).__name__}: {exc}"
            )
            raise
        self.log_outcome(logging.INFO, "ok", account, started)
        return result


@app.task(name="voicemail.ping", bind=True, base=VoicemailTask)
def ping(self: VoicemailTask) -> str:
    """No arguments, no Redis, no API: "pong". A by-name liveness check for other
    services, and the queue's own floor in benchmarks/roundtrip.py."""
    return "pong"


@app.task(name="voicemail.get", bind=True, base=VoicemailTask)
def get(self: VoicemailTask, account: Any) -> dict[str, Any]:
    name = check_account(account)
    ctx = context.current()
    creds = ctx.store.get(name)
    current: VoicemailSettings = self.call_api(name, lambda: ctx.client.get_voicemail(creds))
    return current.as_result(name)


LOCK_RETRY_DELAY = 0.5  # seconds between looks at a locked account (no thread held)


def _lock_waits_key(job_id: str) -> str:
    return keys.lock_waits(job_id)


@app.task(name="voicemail.update", bind=True, base=VoicemailTask)
def update(
    self: VoicemailTask,
    account: Any,
    send: Any,
    email: Any,
    *,
    seq: Any = None,
    actor: Any = None,
    reason: Any = None,
) -> dict[str, Any]:
    name, send_, email_ = check_update(account, send, email)
    who = Who(check_actor(actor), check_reason(reason))
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise InputError(f"seq must be a positive integer, got {seq!r:.40}")
    ctx = context.current()
    creds = ctx.store.get(name)
    seq = _numbered(self, ctx, seq)
    lock_owner = new_lock_owner(ctx.instance)  # this delivery's: a duplicate is another
    (verdict,) = ctx.ordering.claim(lock_owner, [(name, seq)])
    if verdict not in (Verdict.CLAIMED, Verdict.UNSURE):
        return _not_sent(self, ctx, verdict, name, seq, VoicemailSettings(email_, send_), who)
    settled = Settled.UNKNOWN  # a kill or an unexpected error mid-request leaves it unknown
    outcome, before = None, None  # what the journal is told: nothing while a retry is to come
    ctx.locks.hold(name, lock_owner)
    try:
        now_in_force, before = _send(self, ctx, creds, verdict, send_, email_, lock_owner)
        settled, outcome = Settled.APPLIED, Outcome.APPLIED
    except Retry as retry:
        settled = settled_by(retry.exc)
        raise
    except PlusofonError as exc:
        settled, outcome = settled_by(exc), Outcome.FAILED
        raise
    except ClaimGone as gone:
        # Its claim went to a newer update, or its worker was declared dead, between two
        # attempts: send nothing more; the redelivery's claim says what is left to do.
        logger.info("job %s account=%s: %s", self.request.id, name, gone)
        raise self.retry(countdown=LOCK_RETRY_DELAY, max_retries=None) from None
    finally:
        ctx.locks.drop(name, lock_owner)
        ref = f"job:{self.request.id}"
        if outcome is not None:  # before the release: a redelivery then finds it unsure
            entry = change_entry(ref, name, (send_, email_), outcome, who, before)
            write_quietly(ctx.journal, [entry])
        _release(ctx, lock_owner, Release(name, seq, settled, send_, email_, ref))
    return now_in_force.as_result(name)


def _numbered(task: VoicemailTask, ctx: WorkerContext, seq: int | None) -> int:
    """The update's number. Sent by name without one, it is numbered when a worker first
    sees it and pinned to the job id, so a redelivery of the same message keeps its place."""
    if seq is not None:
        return seq
    job_id = str(task.request.id)
    seq = int(ctx.ordering.next_seq(pin=job_id, ttl=ctx.settings.result_expires))
    task.request.kwargs = {**(task.request.kwargs or {}), "seq": seq}
    return seq


def _not_sent(
    task: VoicemailTask,
    ctx: WorkerContext,
    verdict: Verdict,
    name: str,
    seq: int,
    wanted: VoicemailSettings,
    who: Who,
) -> dict[str, Any]:
    """The claim says this update is not to be sent: refused, later, or settled already."""
    job_id = str(task.request.id)
    if verdict in (Verdict.EXPIRED, Verdict.SUPERSEDED):  # never sent, and never will be
        failed = verdict == Verdict.EXPIRED
        outcome = Outcome.FAILED if failed else Outcome.SUPERSEDED
        entry = change_entry(f"job:{job_id}", name, (wanted.send, wanted.email), outcome, who)
        write_quietly(ctx.journal, [entry])
    if verdict == Verdict.EXPIRED:
        raise Expired(expired_reason(seq, ctx.settings.ordering_ttl))
    if verdict == Verdict.NOT_ISSUED:
        raise InputError(f"seq {seq} was never issued: leave it out, a worker numbers the update")
    if verdict == Verdict.LOCKED:
        # Another update of the account runs: look again shortly. The wait is a countdown
        # (no pool thread held) and does not spend the re-queue budget of API trouble.
        with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.incr(_lock_waits_key(job_id))
            pipe.expire(_lock_waits_key(job_id), ctx.settings.result_expires)
            pipe.execute()
        raise task.retry(countdown=LOCK_RETRY_DELAY, max_retries=None) from None
    superseded = verdict == Verdict.SUPERSEDED
    why = "a later update is already applied" if superseded else "already applied"
    logger.info("job %s account=%s seq=%d skipped: %s", job_id, name, seq, why)
    result = wanted.as_result(name)
    return {**result, "superseded": True} if superseded else result


def _send(
    task: VoicemailTask,
    ctx: WorkerContext,
    creds: Credentials,
    verdict: Verdict,
    send: bool,
    email: str,
    lock_owner: str,
) -> tuple[VoicemailSettings, tuple[bool, str] | None]:
    """The settings now in force, and what the account held when it was read first."""
    name = creds.account
    before = None
    if verdict == Verdict.UNSURE:
        # An earlier delivery claimed this update and died mid-request: read before
        # sending, so a change that already reached the API is not sent twice.
        current = task.call_api(name, lambda: ctx.client.get_voicemail(creds))
        if (current.send, current.email) == (send, email):
            return current, None  # that delivery applied it: what it found is unknown
        before = (current.send, current.email)
    ref = f"job:{task.request.id}"

    def note_attempt(exc: BaseException) -> None:
        # An answer that does not say whether the vendor applied it: read back later.
        if settled_by(exc) == Settled.UNKNOWN:
            ctx.readback.schedule(name, ref)

    now_in_force = task.call_api(
        name,
        lambda: ctx.client.set_voicemail(creds, send, email),
        on_failure=note_attempt,
        before_retry=lambda: _check_claim(ctx, name, lock_owner),
    )
    return now_in_force, before


class ClaimGone(Exception):
    """Between two attempts, the account's lock went to another owner, or this worker
    was declared dead: the next attempt is not sent."""


def _check_claim(ctx: WorkerContext, account: str, lock_owner: str) -> None:
    """Before every attempt but the first (one round trip, only on retries)."""
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.account_state(account), "o")
        # The owner's instance, not the worker's current one: a worker found dead goes on
        # under a new identity, and the claims of the old one are what no longer hold.
        pipe.exists(keys.reaped(lock_owner.partition(":")[0]))
        holder, reaped = pipe.execute()
    if reaped:
        raise ClaimGone("this worker was declared dead: its claims no longer hold")
    if holder is None or holder.decode() != lock_owner:
        raise ClaimGone("another update took the account's lock")


def _release(ctx: WorkerContext, lock_owner: str, release: Release) -> None:
    account = release.account
    try:
        ctx.ordering.release(lock_owner, [release])
    except redis.RedisError as exc:
        # Never a reason to fail a change that was applied: the lock lapses by itself, and
        # a redelivery of this update finds it claimed and checks before sending.
        logger.warning("job for account %s: could not release its lock: %s", account, exc)
