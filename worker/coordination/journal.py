"""The journal of who changed what (issue 19): one entry per change the project applies,
single job or bulk row, kept `VOICEMAIL_JOURNAL_DAYS` days.

    from worker.coordination.journal import JournalEntry, Outcome, Values, open_journal
    journal = open_journal(settings, redis_client)       # once per process
    journal.write_many([JournalEntry(time=utc_now(), account="acme", before=Values(...),
                                     after=Values(...), actor="api", reason="ticket 7",
                                     outcome=Outcome.APPLIED, job_id=job_id)])
    journal.history("acme", limit=50)                    # newest first
    journal.bulk_entries(bulk_id)                        # line order

The bulk engine uses `open_async_journal(settings, async_redis_client)` and awaits
`write_many` once per batch of rows. Where it lives: Redis (`journal_redis`) unless
`VOICEMAIL_JOURNAL_URL` names PostgreSQL (`journal_pg`, the `postgres` extra);
`VOICEMAIL_JOURNAL=off` gives a journal that writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

import redis
import redis.asyncio as aioredis

from ..core.errors import ConfigError
from ..core.settings import Settings
from .journal_entry import FIELDS, JournalEntry, Outcome, Values, utc_now
from .journal_redis import AsyncRedisJournal, RedisJournal

if TYPE_CHECKING:
    from .journal_pg import PostgresJournal

__all__ = [
    "FIELDS",
    "AsyncJournal",
    "AsyncNullJournal",
    "AsyncRedisJournal",
    "Journal",
    "JournalEntry",
    "NullJournal",
    "Outcome",
    "RedisJournal",
    "Values",
    "journal_store",
    "open_async_journal",
    "open_journal",
    "utc_now",
]


class Journal(Protocol):
    def write_many(self, entries: Iterable[JournalEntry]) -> int:
        """Write a batch in one round trip; return how many entries were written."""
        ...

    def history(self, account: str, limit: int = 50) -> list[JournalEntry]:
        """The account's entries, newest first."""
        ...

    def bulk_entries(self, bulk_id: str) -> Iterator[JournalEntry]:
        """The bulk's entries in line order."""
        ...


class AsyncJournal(Protocol):
    async def write_many(self, entries: Iterable[JournalEntry]) -> int: ...

    async def aclose(self) -> None: ...


class NullJournal:
    """`VOICEMAIL_JOURNAL=off`: writes nothing, holds nothing."""

    def write_many(self, entries: Iterable[JournalEntry]) -> int:
        return 0

    def history(self, account: str, limit: int = 50) -> list[JournalEntry]:
        return []

    def bulk_entries(self, bulk_id: str) -> Iterator[JournalEntry]:
        return iter(())


class AsyncNullJournal:
    async def write_many(self, entries: Iterable[JournalEntry]) -> int:
        return 0

    async def aclose(self) -> None:
        return None


def _postgres(settings: Settings) -> PostgresJournal:
    assert settings.journal_url is not None
    try:
        from .journal_pg import PostgresJournal
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise ConfigError(
            "VOICEMAIL_JOURNAL_URL is set but psycopg is not installed: "
            "install the extra, pip install 'voicemail-worker[postgres]'"
        ) from None
    return PostgresJournal(settings.journal_url, settings.journal_days)


def journal_store(settings: Settings, redis_client: redis.Redis) -> Journal:
    """The store the settings name, on or off: `voicemail history` reads what was
    written before the journal was turned off."""
    if settings.journal_url:
        return _postgres(settings)
    return RedisJournal(redis_client, settings.journal_days)


def open_journal(settings: Settings, redis_client: redis.Redis) -> Journal:
    """The journal task code writes to (a `NullJournal` when it is off)."""
    if not settings.journal:
        return NullJournal()
    return journal_store(settings, redis_client)


def open_async_journal(settings: Settings, redis_client: aioredis.Redis) -> AsyncJournal:
    """The journal the bulk engine writes to from its event loop."""
    if not settings.journal:
        return AsyncNullJournal()
    if settings.journal_url:
        from .journal_pg import AsyncPostgresJournal

        return AsyncPostgresJournal(_postgres(settings))
    return AsyncRedisJournal(redis_client, settings.journal_days)
