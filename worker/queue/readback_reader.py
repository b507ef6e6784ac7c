"""The worker's read-back reader: takes due read-backs and corrects what landed late.

One daemon thread per worker main process (started when the worker is ready, stopped
with its context). Every second it takes the read-backs that are due
(worker.coordination.readback), leased so that a worker killed mid-way leaves them to
another, and for each account: locks it against updates for the moment (an update in
flight has the last word: the read-back waits for it), reads it through the shared rate
limit and breaker, and when the vendor does not hold the values of the account's
newest applied update, PATCHes them again. That PATCH is a correction: counted in
`voicemail_corrections_total`, in the `corrected` count of the bulk whose row asked for
those values, logged with the account and both updates, and journaled (`corrected`,
actor `voicemail`, under the job or bulk row whose values it put back).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import redis

from ..api.client import PlusofonClient
from ..api.retry import call_with_retries
from ..coordination.bulk_records import Keys
from ..coordination.journal import Journal, Outcome
from ..coordination.journal_rows import Who, change_entry, write_quietly
from ..coordination.ordering import Ordering, Settled, new_lock_owner, settled_by
from ..coordination.readback import Due, Intent, ReadBack
from ..coordination.stats import STATS_KEY
from ..core.errors import AccountNotFound, CredentialError, PermanentError, TransientError
from ..core.settings import Settings
from ..core.validation import SELF_ACTOR
from ..store.credentials import CredentialStore


class ReaderContext(Protocol):
    """What the reader uses of the worker context (which holds the reader)."""

    settings: Settings
    redis: redis.Redis
    store: CredentialStore
    client: PlusofonClient  # with the shared rate limiter and breaker
    ordering: Ordering
    readback: ReadBack
    journal: Journal

    @property
    def instance(self) -> str: ...


logger = logging.getLogger(__name__)

TICK = 1.0  # seconds between two looks at what is due
BATCH = 20  # read-backs taken per look
LEASE = 120.0  # seconds a taken read-back waits before another worker may take it


class ReadBackReader:
    def __init__(self, ctx: ReaderContext) -> None:
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voicemail-readback", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            try:
                while self.run_once() == BATCH and not self._stop.is_set():
                    pass
            except Exception:  # Redis away, say: the read-backs wait in Redis
                logger.warning("read-backs could not run this time", exc_info=True)

    def run_once(self) -> int:
        due = self.ctx.readback.take_due(BATCH, LEASE)
        for item in due:
            self.check(item)
        return len(due)

    def check(self, due: Due) -> None:
        ctx = self.ctx
        owner = new_lock_owner(ctx.instance)
        if not ctx.ordering.lock_for_check(owner, due.account):
            ctx.readback.later(due, 1.0)  # an update of it runs: it goes first
            return
        try:
            found = self.read(due.account) if due.intent is not None else None
            if due.intent is None or found == (due.intent.send, due.intent.email):
                logger.info("read-back of account %s: holds its newest update", due.account)
                ctx.readback.done(due)
            else:
                assert found is not None
                self.correct(due, due.intent, found)
        except (AccountNotFound, CredentialError, PermanentError) as exc:
            logger.warning("read-back of account %s given up: %s", due.account, exc)
            ctx.readback.done(due)
        except (TransientError, redis.RedisError) as exc:
            logger.info("read-back of account %s comes again: %s", due.account, exc)
            ctx.readback.later(due, ctx.settings.verify_after)
        finally:
            ctx.ordering.unlock_check(owner, due.account)

    def read(self, account: str) -> tuple[bool, str]:
        creds = self.ctx.store.get(account)
        found = call_with_retries(self.ctx.settings, lambda: self.ctx.client.get_voicemail(creds))
        return found.send, found.email

    def correct(self, due: Due, intent: Intent, found: tuple[bool, str]) -> None:
        ctx = self.ctx
        creds = ctx.store.get(due.account)
        try:
            call_with_retries(
                ctx.settings, lambda: ctx.client.set_voicemail(creds, intent.send, intent.email)
            )
        except TransientError as exc:
            if settled_by(exc) == Settled.UNKNOWN:  # the correction itself may land late
                ctx.readback.schedule(due.account, "correction")
            raise
        self.count(intent)
        self.journal(due, intent, found)
        logger.warning(
            "correction: account %s held send=%s, email=%s (a late landing of %s); put back "
            "send=%s, email=%s of %s",
            due.account,
            str(found[0]).lower(),
            found[1],
            intent.ambiguous_ref or "an ambiguous update",
            str(intent.send).lower(),
            intent.email,
            intent.ref,
            extra={"account": due.account, "outcome": "corrected"},
        )
        ctx.readback.done(due)

    def journal(self, due: Due, intent: Intent, found: tuple[bool, str]) -> None:
        late = intent.ambiguous_ref or "an ambiguous update"
        why = f"read-back: a late landing of {late} had undone {intent.ref}; put back"
        entry = change_entry(
            intent.ref,
            due.account,
            (intent.send, intent.email),
            Outcome.CORRECTED,
            Who(SELF_ACTOR, why),
            before=found,
        )
        write_quietly(self.ctx.journal, [entry])

    def count(self, intent: Intent) -> None:
        with self.ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(STATS_KEY, "corrections", 1)
            if (bulk := intent.bulk) is not None:
                meta = Keys(bulk[0]).meta
                pipe.exists(meta)
            results = pipe.execute()
        if bulk is not None and results[-1]:  # a bulk record gone since is not recreated
            self.ctx.redis.hincrby(Keys(bulk[0]).meta, "corrected", 1)
