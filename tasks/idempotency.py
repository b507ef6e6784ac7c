"""Idempotency keys that never answer with work that was not queued.

A key first holds a claim (its caller's id and a deadline on Redis's clock), and the id
alone once the work is queued (`settle`). A caller killed between the two, or one whose
Redis failed before it could clean up, leaves a claim that lapses: the next call with
the same key takes it over and queues the work (`idempotency.lua`). Until then a call
finds the claim busy: a job's caller waits for it to settle or lapse; a bulk, which may
stream rows for minutes, keeps its claim alive from a thread and a second caller gets
its id.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from worker.core import keys
from worker.core.connections import text
from worker.core.errors import InputError

SCRIPT = resources.files(__package__).joinpath("idempotency.lua").read_text(encoding="utf-8")
JOB_LEASE = 5.0  # seconds an enqueue may take between its claim and its publish
BULK_LEASE = 10.0  # a streaming bulk's claim, renewed by a thread every third of it

State = Literal["new", "done", "busy", "takeover", "lost"]


@dataclass(frozen=True)
class Claim:
    state: State
    id: str  # the id to return (done, busy) or the one that lapsed (takeover)


class IdempotencyKey:
    def __init__(self, client: Any, key: str, lease: float, ttl: int) -> None:
        if not isinstance(key, str) or not key or len(key) > 200:
            raise InputError("idempotency_key must be a non-empty string of at most 200 characters")
        self._script = client.register_script(SCRIPT)
        self._key = keys.idempotency(key)
        self._lease_ms = round(lease * 1000)
        self._ttl = ttl
        self.took_over: str | None = None  # the lapsed claimant's id, after a takeover

    def _call(self, op: str, id_: str) -> Claim:
        state, found = self._script(keys=[self._key], args=[op, id_, self._lease_ms, self._ttl])
        return Claim(text(state), text(found))  # type: ignore[arg-type]

    def claim(self, new_id: str) -> Claim:
        found = self._call("claim", new_id)
        if found.state == "takeover":
            self.took_over = found.id
        return found

    def wait_settled(self, new_id: str, timeout: float) -> Claim:
        """Claim, waiting while another caller's claim is busy (at most its lease)."""
        deadline = time.monotonic() + timeout
        while (found := self.claim(new_id)).state == "busy" and time.monotonic() < deadline:
            time.sleep(0.02)
        return found

    def renew(self, id_: str) -> None:
        self._call("renew", id_)

    @contextlib.contextmanager
    def kept_alive(self, id_: str) -> Iterator[None]:
        """Renew the claim while the caller streams, however slowly its rows come."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self._lease_ms / 3000):
                with contextlib.suppress(Exception):  # a missed beat: the next one tries
                    self.renew(id_)

        thread = threading.Thread(target=beat, name="voicemail-idempotency", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def settle(self, id_: str) -> None:
        self._call("settle", id_)

    def drop(self, id_: str) -> None:
        self._call("drop", id_)
