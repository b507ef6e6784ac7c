"""Dead letters: every job that failed for good, kept with its reason until re-driven.

A job lands here when it fails permanently or runs out of retries: the result backend
writes it just before it stores the FAILURE (`worker.queue.backend`; a retry stores
none). `voicemail dead list` shows them,
`voicemail dead retry` sends each again under a new id with the same arguments
(an update keeps its sequence number, so a re-drive never overwrites a newer
update of the account). A job id that later succeeds leaves the list by itself.
Bulk rows that fail are listed per bulk instead (`voicemail bulk failures`).

Letters older than VOICEMAIL_DEAD_LETTER_DAYS are dropped whenever one is written, and
`voicemail dead purge [--older-than DURATION]` drops them on demand. `failed_at` is
stored as epoch seconds (the index's score) and shown in ISO 8601 UTC (`as_dict`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ..core import keys
from ..core.errors import is_permanent

DEAD_KEY = keys.DEAD_LETTERS
DEAD_INDEX = keys.DEAD_LETTER_INDEX


@dataclass(frozen=True)
class DeadLetter:
    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    error: dict[str, str]
    failed_at: float
    retries: int = 0

    @property
    def permanent(self) -> bool:
        """Failed in a way that a re-drive repeats (the task's `throws`)."""
        return is_permanent(str(self.error.get("type", "")))

    def as_dict(self) -> dict[str, Any]:
        """For output: `failed_at` in ISO 8601, UTC."""
        return {**asdict(self), "failed_at": iso_utc(self.failed_at)}


def iso_utc(epoch: float) -> str:
    """`2025-01-31T12:00:00.123Z`: how every time of ours is shown."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def record(client: Any, letter: DeadLetter, keep_days: float | None = None) -> None:
    """Keep `letter`; with `keep_days`, drop the letters older than that in the same go."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(DEAD_KEY, letter.id, json.dumps(asdict(letter), default=repr))
        pipe.zadd(DEAD_INDEX, {letter.id: letter.failed_at})
        pipe.execute()
    if keep_days is not None:
        purge(client, older_than=keep_days * 86_400)


def purge(client: Any, older_than: float | None = None, page: int = 500) -> int:
    """Drop the letters that failed more than `older_than` seconds ago (all, without it);
    returns how many went."""
    cutoff = "+inf" if older_than is None else time.time() - older_than
    dropped = 0
    while ids := client.zrangebyscore(DEAD_INDEX, "-inf", cutoff, start=0, num=page):
        with client.pipeline(transaction=True) as pipe:
            pipe.hdel(DEAD_KEY, *ids)
            pipe.zrem(DEAD_INDEX, *ids)
            removed, _ = pipe.execute()
        dropped += int(removed)
    return dropped


def forget(client: Any, job_id: str) -> bool:
    with client.pipeline(transaction=True) as pipe:
        forget_in(pipe, job_id)
        removed, _ = pipe.execute()
    return bool(removed)


def forget_in(pipe: Any, job_id: str) -> None:
    """Queue the commands that drop `job_id` from the list, on the caller's pipeline."""
    pipe.hdel(DEAD_KEY, job_id)
    pipe.zrem(DEAD_INDEX, job_id)


def get(client: Any, job_id: str) -> DeadLetter | None:
    raw = client.hget(DEAD_KEY, job_id)
    return DeadLetter(**json.loads(raw)) if raw else None


def iterate(client: Any, page: int = 500) -> Iterator[DeadLetter]:
    """Oldest first."""
    start = 0
    while True:
        ids = client.zrange(DEAD_INDEX, start, start + page - 1)
        if not ids:
            return
        for raw in client.hmget(DEAD_KEY, ids):
            if raw:
                yield DeadLetter(**json.loads(raw))
        start += page


def letter_from(
    task_id: str, task: str, args: Any, kwargs: Any, exc: BaseException, retries: int
) -> DeadLetter:
    return DeadLetter(
        id=task_id,
        task=task,
        args=list(args or []),
        kwargs=dict(kwargs or {}),
        error={
            "type": type(exc).__name__,
            "message": str(exc)[:500],
            "reason": f"{type(exc).__name__}: {str(exc)[:500]}",
        },
        failed_at=time.time(),
        retries=retries,
    )
