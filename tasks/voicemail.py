"""Task definitions. Names are a public contract: other services `send_task` by name.

- `voicemail.get(account)` -> `{"account", "email", "send"}`
- `voicemail.update(account, send, email)` -> the same shape, the settings now in force
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
from worker.retry import call_with_retries, requeue_delay
from worker.runtime import runtime
from worker.validation import check_account, check_update

logger = logging.getLogger(__name__)

T = TypeVar("T")


class VoicemailTask(Task):  # type: ignore[type-arg]
    # Expected failures: stored as FAILURE and logged at INFO, without a traceback.
    throws = (PermanentError, InputError, AccountNotFound, CredentialError)

    def call_api(self, account: str, fn: Callable[[], T]) -> T:
        """Short retries in process; if still transient, re-queue with a countdown."""
        settings = runtime().settings
        started = time.perf_counter()
        try:
            result = call_with_retries(settings, fn)
        except TransientError as exc:
            requeues = self.request.retries
            if requeues >= settings.requeue_max:
                logger.warning(
                    "job %s account=%s gave up after %d re-queues: %s: %s",
                    self.request.id,
                    account,
                    requeues,
                    type(exc).__name__,
                    exc,
                )
                raise
            countdown = requeue_delay(settings, requeues, exc)
            logger.info(
                "job %s account=%s re-queued in %.1fs (%d/%d): %s: %s",
                self.request.id,
                account,
                countdown,
                requeues + 1,
                settings.requeue_max,
                type(exc).__name__,
                exc,
            )
            raise self.retry(
                exc=exc, countdown=countdown, max_retries=settings.requeue_max
            ) from None
        except PermanentError as exc:
            logger.info(
                "job %s account=%s failed: %s: %s",
                self.request.id,
                account,
                type(exc).__name__,
                exc,
            )
            raise
        logger.info(
            "job %s account=%s ok in %.1fms (requeues %d)",
            self.request.id,
            account,
            (time.perf_counter() - started) * 1000,
            self.request.retries,
        )
        return result


@app.task(name="voicemail.get", bind=True, base=VoicemailTask)
def get(self: VoicemailTask, account: Any) -> dict[str, Any]:
    name = check_account(account)
    rt = runtime()
    creds = rt.store.get(name)
    settings: VoicemailSettings = self.call_api(name, lambda: rt.client.get_voicemail(creds))
    return settings.as_result(name)


@app.task(name="voicemail.update", bind=True, base=VoicemailTask)
def update(self: VoicemailTask, account: Any, send: Any, email: Any) -> dict[str, Any]:
    name, send_, email_ = check_update(account, send, email)
    rt = runtime()
    creds = rt.store.get(name)
    settings: VoicemailSettings = self.call_api(
        name, lambda: rt.client.set_voicemail(creds, send_, email_)
    )
    return settings.as_result(name)
