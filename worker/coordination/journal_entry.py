"""One entry of the journal of changes: who changed which account's voicemail, how, why.

The fields are the contract of issue 19 and nothing else: an entry is built from named
values, never from a task's arguments, so a token has no field to travel in.
`to_json()` writes the documented shape; the stores keep their own compact forms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

FIELDS = (
    "time",
    "account",
    "before",
    "after",
    "actor",
    "reason",
    "job_id",
    "bulk_id",
    "line",
    "outcome",
)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Outcome(StrEnum):
    APPLIED = "applied"  # the API now holds `after`
    UNCHANGED = "unchanged"  # it already did: nothing was sent
    SUPERSEDED = "superseded"  # a later update of the account won; this one was dropped
    FAILED = "failed"
    REVERTED = "reverted"  # put back to what a revertible bulk found
    CORRECTED = "corrected"


@dataclass(frozen=True, slots=True)
class Values:
    """An account's voicemail settings as the journal records them."""

    send: bool
    email: str

    def as_dict(self) -> dict[str, Any]:
        return {"send": self.send, "email": self.email}

    @classmethod
    def from_dict(cls, data: Any) -> Values:
        if not isinstance(data, dict) or set(data) != {"send", "email"}:
            raise ValueError(f'expected {{"send", "email"}}, got {data!r}')
        send, email = data["send"], data["email"]
        if not isinstance(send, bool) or not isinstance(email, str):
            raise ValueError(f"send must be a bool and email a str, got {data!r}")
        return cls(send=send, email=email)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC to the millisecond: `2026-11-29T07:20:01.123Z`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # Python 3.11 reads the trailing Z
    if moment.tzinfo is None:
        raise ValueError(f"time must carry its zone: {text!r}")
    return moment.astimezone(UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float on the way)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One change (or attempt) of one account, by a single job or one bulk row.

    `time` is kept in UTC to the millisecond, as written and as every store keeps it, so
    an entry read back equals the one written. A bulk row names its bulk and line, a
    single job its job id; never both.
    """

    time: datetime
    account: str
    before: Values | None  # what was read before the change, when it was
    after: Values
    actor: str
    reason: str
    outcome: Outcome
    job_id: str | None = None
    bulk_id: str | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        # Each step only when needed: the bulk engine builds one entry per row.
        moment = self.time
        if moment.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        if moment.tzinfo is not UTC:
            moment = moment.astimezone(UTC)
        if moment.microsecond % 1000:
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if moment is not self.time:
            object.__setattr__(self, "time", moment)
        if type(self.outcome) is not Outcome:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        if not self.account:
            raise ValueError("account must not be empty")
        if (self.job_id is None) == (self.bulk_id is None):
            raise ValueError("an entry names either a job_id or a bulk_id, not both or neither")
        if (self.bulk_id is None) != (self.line is None):
            raise ValueError("a bulk entry names its line; a job entry has none")

    def as_dict(self) -> dict[str, Any]:
        """The documented shape, every field present (null where it does not apply)."""
        return {
            "time": format_time(self.time),
            "account": self.account,
            "before": self.before.as_dict() if self.before else None,
            "after": self.after.as_dict(),
            "actor": self.actor,
            "reason": self.reason,
            "job_id": self.job_id,
            "bulk_id": self.bulk_id,
            "line": self.line,
            "outcome": self.outcome.value,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> JournalEntry:
        """The inverse of `as_dict`; refuses a field the contract does not name."""
        if not isinstance(data, dict):
            raise ValueError(f"a journal entry is a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ValueError(f"not journal fields: {sorted(unknown)}")
        before = data.get("before")
        return cls(
            time=parse_time(data["time"]),
            account=data["account"],
            before=Values.from_dict(before) if before is not None else None,
            after=Values.from_dict(data["after"]),
            actor=data["actor"],
            reason=data["reason"],
            outcome=Outcome(data["outcome"]),
            job_id=data.get("job_id"),
            bulk_id=data.get("bulk_id"),
            line=data.get("line"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> JournalEntry:
        return cls.from_dict(json.loads(text))
