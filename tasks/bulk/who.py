"""Who asked for a bulk and why: the `actor` and `reason` of its record, which every row's
journal entry carries (worker.coordination.journal_rows), and the rule that a long bulk
must say why (`VOICEMAIL_REASON_REQUIRED_ROWS`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from redis.typing import EncodableT, FieldT

from worker.core.errors import InputError
from worker.core.validation import check_actor, check_reason, default_actor


def who_fields(actor: str | None = None, reason: str | None = None) -> dict[FieldT, EncodableT]:
    """The bulk record's `actor` (this process's `$USER@host` unless given) and `reason`."""
    return {
        "actor": check_actor(actor if actor is not None else default_actor()),
        "reason": check_reason(reason),
    }


def job_fields(actor: str | None = None, reason: str | None = None) -> dict[str, str]:
    """A single update's `actor` and `reason` keyword arguments, as `who_fields`."""
    return {"actor": check_actor(actor or default_actor()), "reason": check_reason(reason)}


def reason_checked(
    rows: Iterable[Any], options: Mapping[Any, Any], limit: int | None
) -> Iterable[Any]:
    """`rows`, once it is sure a bulk that writes and gives no reason has at most `limit`
    of them: the first `limit` + 1 are read ahead, so a longer one is refused before
    anything of it is recorded or sent. A bulk that only reads (a plan, a verify) is
    never refused."""
    if limit is None or options.get("reason") or options.get("verify") or options.get("plan"):
        return rows
    iterator = iter(rows)
    head = list(itertools.islice(iterator, limit + 1))
    if len(head) > limit:
        raise InputError(
            f"a bulk of more than {limit} rows needs a reason (VOICEMAIL_REASON_REQUIRED_ROWS): "
            "give --reason, or reason= from Python"
        )
    return itertools.chain(head, iterator)
