"""What the journal is told of each change: entries built from a single job, a bulk row or
a correction, and the write that never fails the change it records.

The entry of a bulk row is built where the row settles (`BulkJournal.entry`) and written
with the chunk's outcomes (worker.engine.recorder), so a row recorded once is journaled
once. Its actor and reason come from the bulk's record (`actor`, `reason` in the meta
hash, written by the producer); what a row read before it wrote is noted as it reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .bulk_records import CANCELLED, INVALID, SUCCEEDED, UNCHANGED, BulkRow
from .journal_entry import JournalEntry, Outcome, Values, utc_now
from .ordering import Verdict

logger = logging.getLogger(__name__)

# The bulk record's fields the engine reads for the journal, in this order.
JOURNAL_FIELDS = ("actor", "reason")


def ref_ids(ref: str) -> dict[str, Any]:
    """`job:<id>` or `bulk:<id>:<line>` (an update's ref) as the entry's ids."""
    kind, _, rest = ref.partition(":")
    if kind == "bulk":
        bulk_id, _, line = rest.rpartition(":")
        if bulk_id and line.isdigit():
            return {"bulk_id": bulk_id, "line": int(line)}
    return {"job_id": rest if kind == "job" and rest else ref}


def values(send: bool, email: str) -> Values:
    return Values(send=bool(send), email=str(email))


def write_quietly(journal: Any, entries: Iterable[JournalEntry]) -> None:
    """Write through a sync journal; a journal that cannot be reached never fails the
    change it records (which is applied already): it is logged, and the entry lost."""
    try:
        journal.write_many(entries)
    except Exception as exc:  # Redis or PostgreSQL away, psycopg's own errors
        logger.warning("journal entry not written: %s: %s", type(exc).__name__, exc)


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass
class BulkJournal:
    """The journal side of one chunk run: who and why (from the bulk's record) and what
    each row read before it wrote."""

    bulk_id: str
    actor: str = ""
    reason: str = ""
    reverts: bool = False
    writes: bool = True  # False for a bulk that only reads (verify, plan): no entries
    read: dict[int, Values] = field(default_factory=dict)
    superseded: set[int] = field(default_factory=set)

    @classmethod
    def from_meta(cls, bulk_id: str, raw: Sequence[Any], mode: Any) -> BulkJournal:
        """From the bulk record's fields, JOURNAL_FIELDS last, and the engine's `Mode`."""
        actor, reason = (_text(v) for v in raw[len(raw) - len(JOURNAL_FIELDS) :])
        return cls(bulk_id, actor, reason, bool(mode.reverts), not mode.read_only)

    def note_read(self, line: int, send: bool, email: str) -> None:
        self.read[line] = values(send, email)

    def note_verdict(self, line: int, verdict: Verdict) -> None:
        """A row its claim settled: superseded by a newer update, or applied already."""
        if verdict == Verdict.SUPERSEDED:
            self.superseded.add(line)

    def outcome(self, code: str, superseded: bool = False) -> Outcome | None:
        """The journal's outcome for a row's bulk outcome code; None: no entry (a row a
        cancel kept back sent nothing, nor did a row refused at submission)."""
        if code in (CANCELLED, INVALID):
            return None
        if code == SUCCEEDED:
            return Outcome.REVERTED if self.reverts else Outcome.APPLIED
        if code == UNCHANGED:
            return Outcome.SUPERSEDED if superseded else Outcome.UNCHANGED
        return Outcome.FAILED  # failed, stale, drifted

    def entry(self, row: BulkRow, code: str) -> JournalEntry | None:
        """The entry of `row`, settled with outcome `code` (None: it has none)."""
        superseded = row.line in self.superseded
        self.superseded.discard(row.line)
        outcome = self.outcome(code, superseded) if self.writes else None
        if outcome is None:
            return None
        return JournalEntry(
            time=utc_now(),
            account=row.account,
            before=self.read.pop(row.line, None),
            after=values(row.send, row.email),
            actor=self.actor,
            reason=self.reason,
            outcome=outcome,
            bulk_id=self.bulk_id,
            line=row.line,
        )


class Who(NamedTuple):
    """Who asked for a change, and why (either may be "": a sender that did not say)."""

    actor: str
    reason: str


def change_entry(
    ref: str,
    account: str,
    after: tuple[bool, str],
    outcome: Outcome,
    who: Who,
    before: tuple[bool, str] | None = None,
) -> JournalEntry:
    """The entry of a single job (`job:<id>`) or a correction of any update's ref."""
    return JournalEntry(
        time=utc_now(),
        account=account,
        before=values(*before) if before is not None else None,
        after=values(*after),
        actor=who.actor,
        reason=who.reason,
        outcome=outcome,
        **ref_ids(ref),
    )
