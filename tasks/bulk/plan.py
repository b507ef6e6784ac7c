"""Plans: `plan_bulk(rows) -> plan id`, `keep_plan`, `plan_summary`, `plan_rows`,
`apply_plan(plan_id) -> bulk id`.

A plan is a bulk that only reads (`plan` in its record): each row's account is read
through the queue, never written, and what it holds goes to the bulk's `before` hash
(line -> JSON [account, send, email], plus the file's [send, email] when they differ:
a row to change). The plan id is that bulk's id; `keep_plan` makes its records last
`VOICEMAIL_PLAN_TTL` seconds. Counts: `succeeded` are the rows to change, `unchanged`
those already there, `invalid` the rows refused at submission, and the other failed rows
could not be read (`unreachable`).

`apply_plan` queues the rows to change as a new bulk (`applies` in its record). Each row
carries what the plan read as its `expect`: an account that holds anything else by then
is left alone and fails with a reason starting `Stale:`, counted in `stale`. A plan is
applied once; a second `apply_plan` is refused (`PlanRefused`), naming the first bulk.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Unpack

from worker.coordination.bulk_records import BulkRow, Keys
from worker.coordination.bulk_status import BulkStatus, read_status
from worker.core.connections import text
from worker.core.errors import InputError
from worker.core.settings import get_settings

from ..connection import redis_client, redis_errors
from .results import bulk_failures
from .revert import before_entries
from .submit import BulkOptions, bulk_options, submit_as, submit_once
from .who import who_fields

REQUESTS_PER_ROW = 2  # an applied row is read (is it still as planned?), then written


class PlanRefused(InputError):
    """The plan cannot be applied: not a plan, not finished, or applied already."""


def plan_bulk(rows: Iterable[Any], *, actor: str | None = None, reason: str | None = None) -> str:
    """Queue a read of every row's account; returns the plan id. Sends no PATCH. Its
    `reason` becomes that of its apply, unless the apply gives one."""
    with redis_errors():
        return submit_as(uuid.uuid4().hex, rows, {"plan": 1, **who_fields(actor, reason)})


def keep_plan(plan_id: str) -> None:
    """Keep the finished plan's records `VOICEMAIL_PLAN_TTL` seconds from now."""
    ttl = get_settings().plan_ttl
    keys = Keys(plan_id)
    with redis_errors(), redis_client().pipeline(transaction=False) as pipe:
        pipe.hset(keys.meta, "plan_expires_at", repr(time.time() + ttl))
        for key in keys.all():
            pipe.expire(key, ttl)
        pipe.execute()


def plan_summary(status: BulkStatus) -> dict[str, Any]:
    """`{"plan_id", "total", "change", "unchanged", "unreachable", "invalid",
    "estimate_seconds"}`."""
    return {
        "plan_id": status.bulk_id,
        "total": status.total,
        "change": status.succeeded,
        "unchanged": status.unchanged,
        "unreachable": max(status.failed - status.invalid, 0),
        "invalid": status.invalid,
        "estimate_seconds": estimate_seconds(status, get_settings().rate_limit),
    }


def estimate_seconds(status: BulkStatus, rate_limit: float | None) -> float | None:
    """Seconds to apply the rows to change: two requests a row, at the slower of the rate
    the plan itself read at (one request a row) and VOICEMAIL_RATE_LIMIT. None when
    neither is known."""
    if status.succeeded == 0:
        return 0.0
    rates = [rate_limit] if rate_limit else []
    read = status.total - status.invalid - status.cancelled
    if status.started_at is not None and status.finished_at is not None:
        elapsed = status.finished_at - status.started_at
        if read > 0 and elapsed > 0:
            rates.append(read / elapsed)
    if not rates:
        return None
    return round(REQUESTS_PER_ROW * status.succeeded / min(rates), 3)


def _values(send: Any, email: Any) -> dict[str, Any]:
    return {"send": send, "email": email}


def plan_rows(plan_id: str, page: int = 1000) -> Iterator[dict[str, Any]]:
    """Every row of the plan in line order: `line`, `account`, `action` (change,
    unchanged, unreachable, invalid), `before` (what was read, or None), `after` (the
    file's values), and `reason` where the row is not a change."""
    failures = {int(f["line"]): f for f in bulk_failures(plan_id, page)}
    with redis_errors():
        entries = before_entries(redis_client(), Keys(plan_id), page, also=failures)
        for line, entry in entries:
            if entry is not None:
                yield _read_row(line, entry)
            elif line in failures:
                yield _failed_row(failures[line])


def _read_row(line: int, entry: list[Any]) -> dict[str, Any]:
    account, send, email, *after = entry
    before = _values(send, email)
    if after:
        return {
            "line": line,
            "account": account,
            "action": "change",
            "before": before,
            "after": _values(*after),
        }
    reason = "the account holds these values already"
    return {
        "line": line,
        "account": account,
        "action": "unchanged",
        "before": before,
        "after": before,
        "reason": reason,
    }


def _failed_row(failure: dict[str, Any]) -> dict[str, Any]:
    return {
        "line": int(failure["line"]),
        "account": failure.get("account"),
        "action": "invalid" if failure.get("invalid") else "unreachable",
        "before": None,
        "after": _values(failure.get("send"), failure.get("email")),
        "reason": failure.get("reason"),
    }


def _change_rows(client: Any, keys: Keys, page: int = 1000) -> Iterator[BulkRow]:
    """The plan's rows to change: the file's values, if the account still holds what the
    plan read."""
    for line, entry in before_entries(client, keys, page):
        if entry is not None and len(entry) > 3:
            account, send, email, new_send, new_email = entry
            yield BulkRow(line, account, bool(new_send), new_email, expect=(bool(send), email))


def _check_plan(client: Any, plan_id: str) -> None:
    status = read_status(client, plan_id)
    if status.state == "UNKNOWN":
        raise InputError(f"no bulk {plan_id} (never submitted, or expired)")
    if status.kind != "plan":
        raise PlanRefused(f"bulk {plan_id} is not a plan: make one with `voicemail bulk plan`")
    if status.applied_by:
        raise PlanRefused(f"plan {plan_id} was applied already: bulk {status.applied_by}")
    if status.state != "DONE":
        raise PlanRefused(f"plan {plan_id} is {status.state.lower()}, not finished: make it again")


def apply_plan(
    plan_id: str,
    *,
    idempotency_key: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    **options: Unpack[BulkOptions],
) -> str:
    """Queue the plan's rows to change as a new bulk (options as `submit_bulk`'s);
    returns its id. Raises PlanRefused for a plan applied already (a dry run does not
    count), unfinished, or not a plan. Without a `reason`, the plan's is taken."""
    fields = bulk_options(**options)
    fields.update(who_fields(actor, reason))
    fields["applies"] = plan_id
    new_id = uuid.uuid4().hex
    return submit_once(idempotency_key, new_id, lambda: _apply(plan_id, new_id, fields))


def _apply(plan_id: str, new_id: str, options: dict[Any, Any]) -> str:
    client = redis_client()
    keys = Keys(plan_id)
    _check_plan(client, plan_id)
    if not options.get("reason"):
        options["reason"] = text(client.hget(keys.meta, "reason") or b"")
    if options["dry_run"]:
        return submit_as(new_id, _change_rows(client, keys), options)
    if not client.hsetnx(keys.meta, "applied_by", new_id):
        earlier = text(client.hget(keys.meta, "applied_by"))
        raise PlanRefused(f"plan {plan_id} was applied already: bulk {earlier}")
    if client.ttl(keys.meta) == -1:  # it expired just now: the HSETNX made a stray hash
        client.delete(keys.meta)
        raise InputError(f"no bulk {plan_id} (never submitted, or expired)")
    try:
        return submit_as(new_id, _change_rows(client, keys), options)
    except BaseException:
        client.hdel(keys.meta, "applied_by")  # nothing submitted: it may be tried again
        raise
