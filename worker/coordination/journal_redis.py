"""The journal in Redis: a sorted set per account scored by time, one per bulk by line.

    keys.journal_account(account)  zset, score: time in ms, member: the compact entry,
                                   or for a bulk row `b:<bulk_id>:<line>`, a reference
    keys.journal_bulk(bulk_id)     zset, score: line,       member: the compact entry

A bulk row is kept once, in its bulk's set, and referenced from its account's: a bulk
touches most accounts once, and a one-member set holding a whole entry (over
`zset-max-listpack-value`, 64 bytes) costs Redis about 1,100 bytes, where the reference
keeps it a listpack of about 150. `history` is ZRANGE BYSCORE REV LIMIT, O(log n +
limit) however many entries the account has, then one pipelined read of the rows it
references (two round trips). Members are short-keyed JSON without what the key already
says (the account in its own set, the bulk in the bulk's). Two writes of one entry are
one member: a retried batch adds nothing.

Retention: each write drops its accounts' entries older than the retention
(ZREMRANGEBYSCORE) and sets every key it touched to expire after the retention, so an
account or bulk nobody touches again goes away whole; reads skip what is older.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

import redis
import redis.asyncio as aioredis

from ..core import keys, lua
from .journal_entry import JournalEntry, Outcome, Values, from_ms, to_ms

DAY_MS = 86_400_000
PAGE = 1000  # bulk entries read per ZRANGE


# One call writes a batch: every ZADD, prune and EXPIRE of it server-side. Three commands
# per account from Python cost the bulk engine about 40 us of CPU per row, a tenth of it.
WRITE_SCRIPT = lua.load(__package__, "journal_write.lua")
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis's own name


class _Pipeline(Protocol):
    """What `write_many` queues: the same on redis-py's sync and asyncio pipelines."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any: ...


REF = b"b:"  # an account's member that refers to a bulk row


# A JSON string literal as json.dumps(ensure_ascii=False) writes it (C-accelerated).
_text: Callable[[str], str] = json.encoder.encode_basestring


def ref(bulk_id: str, line: int) -> str:
    return f"b:{bulk_id}:{line}"


def pack(entry: JournalEntry, *, in_bulk: bool) -> bytes:
    """The member: short keys, `send` as 0/1, no spaces, absent values left out."""
    return pack_text(entry, in_bulk=in_bulk).encode()


def pack_text(entry: JournalEntry, *, in_bulk: bool) -> str:
    """`pack`'s text: what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` of
    the member's dict writes, byte for byte, built by hand (the engine packs one per row;
    json.dumps of a dict costs three times as much)."""
    text = _text
    parts = [f'{{"t":{to_ms(entry.time)}']
    if in_bulk:
        parts.append(f',"c":{text(entry.account)}')  # the bulk's set holds many accounts
    if (before := entry.before) is not None:
        parts.append(f',"b":[{int(before.send)},{text(before.email)}]')
    after = entry.after
    parts.append(
        f',"a":[{int(after.send)},{text(after.email)}],"u":{text(entry.actor)}'
        f',"r":{text(entry.reason)},"o":"{entry.outcome.value}"'
    )
    if entry.job_id is not None:
        parts.append(f',"j":{text(entry.job_id)}')
    if not in_bulk and entry.bulk_id is not None:
        parts.append(f',"k":{text(entry.bulk_id)}')
    if entry.line is not None:
        # Also in the bulk's set: two rows alike but for it stay two.
        parts.append(f',"l":{entry.line}')
    parts.append("}")
    return "".join(parts)


def _values(pair: list[Any] | None) -> Values | None:
    return None if pair is None else Values(send=bool(pair[0]), email=pair[1])


def unpack(
    member: bytes | str, *, account: str | None = None, bulk_id: str | None = None
) -> JournalEntry:
    """The inverse of `pack`, given what the key held (the account, or the bulk)."""
    data = json.loads(member)
    after = _values(data["a"])
    assert after is not None
    return JournalEntry(
        time=from_ms(data["t"]),
        account=account if account is not None else data["c"],
        before=_values(data.get("b")),
        after=after,
        actor=data["u"],
        reason=data["r"],
        outcome=Outcome(data["o"]),
        job_id=data.get("j"),
        bulk_id=bulk_id if bulk_id is not None else data.get("k"),
        line=data.get("l"),
    )


def queue_writes(pipe: _Pipeline, entries: Iterable[JournalEntry], days: int) -> int:
    """Queue a batch on `pipe` (nothing is sent) as one call of WRITE_SCRIPT: the members
    of every account and bulk, the pruning of the accounts and the expiry of every key
    touched. Returns the count. A NOSCRIPT answer: `load_script`, then queue it again."""
    by_account: dict[str, dict[str, int]] = {}
    by_bulk: dict[str, dict[str, int]] = {}
    count = 0
    for entry in entries:
        count += 1
        score = to_ms(entry.time)
        if entry.bulk_id is not None and entry.line is not None:
            by_bulk.setdefault(entry.bulk_id, {})[pack_text(entry, in_bulk=True)] = entry.line
            member = ref(entry.bulk_id, entry.line)
        else:
            member = pack_text(entry, in_bulk=False)
        by_account.setdefault(entry.account, {})[member] = score
    if not count:
        return 0
    names: list[str] = []
    lines: list[str] = []
    for prune, key_of, groups in (
        (1, keys.journal_account, by_account),
        (0, keys.journal_bulk, by_bulk),
    ):
        for name, members in groups.items():
            names.append(key_of(name))
            lines.append(f"{len(members)} {prune}")
            lines += [f"{score} {member}" for member, score in members.items()]
    text = "\n".join(lines)  # JSON escapes every newline in a member: none in it raw
    pipe.evalsha(WRITE_SHA, len(names), *names, days * 86_400, _cutoff_ms(days), text)
    return count


def load_script(client: redis.Redis) -> None:
    client.script_load(WRITE_SCRIPT)


def _cutoff_ms(days: int) -> int:
    """Entries timed before this are past the retention."""
    return int(time.time() * 1000) - days * DAY_MS


class RedisJournal:
    """The journal in Redis, for task code and the CLI (a sync `redis.Redis`)."""

    def __init__(self, client: redis.Redis, days: int) -> None:
        self.client = client
        self.days = days

    def write_many(self, entries: Iterable[JournalEntry]) -> int:
        """Write a batch in one round trip (one call of WRITE_SCRIPT: a batch cut off by
        a dropped connection is written again whole, without duplicates). Returns how
        many entries it wrote."""
        batch = list(entries)  # queued again after a NOSCRIPT
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            count = queue_writes(pipe, batch, self.days)
            try:
                if count:
                    pipe.execute()
                return count
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                load_script(self.client)  # a restarted or flushed Redis
        raise AssertionError("unreachable")

    def write(self, entry: JournalEntry) -> None:
        self.write_many([entry])

    def history(self, account: str, limit: int = 50) -> list[JournalEntry]:
        """The account's entries within the retention, newest first."""
        members = cast(
            list[tuple[bytes, float]],
            self.client.zrange(
                keys.journal_account(account),
                "+inf",
                _cutoff_ms(self.days),
                desc=True,
                byscore=True,
                offset=0,
                num=limit,
                withscores=True,
            ),
        )
        rows = self._referenced([m for m, _ in members if m.startswith(REF)])
        entries = []
        for member, score in members:
            if not member.startswith(REF):
                entries.append(unpack(member, account=account))
            elif (row := _written_at(rows.get(member, []), int(score))) is not None:
                entries.append(row)  # None: its bulk's set is gone, past the retention
        return entries

    def _referenced(self, refs: list[bytes]) -> dict[bytes, list[JournalEntry]]:
        """The bulk rows `refs` name, read in one round trip."""
        if not refs:
            return {}
        pipe = self.client.pipeline(transaction=False)
        named = [r[len(REF) :].decode().rpartition(":") for r in refs]
        for bulk_id, _, line in named:
            pipe.zrange(keys.journal_bulk(bulk_id), int(line), int(line), byscore=True)
        found = pipe.execute()
        return {
            r: [unpack(m, bulk_id=bulk_id) for m in members]
            for r, (bulk_id, _, _), members in zip(refs, named, found, strict=True)
        }

    def bulk_entries(self, bulk_id: str) -> Iterator[JournalEntry]:
        """The bulk's entries in line order, read a page at a time."""
        key, cutoff = keys.journal_bulk(bulk_id), from_ms(_cutoff_ms(self.days))
        start = 0
        while True:
            page = self.client.zrange(key, start, start + PAGE - 1)
            for member in page:
                entry = unpack(cast(bytes, member), bulk_id=bulk_id)
                if entry.time >= cutoff:
                    yield entry
            if len(page) < PAGE:
                return
            start += PAGE


def _written_at(rows: list[JournalEntry], ms: int) -> JournalEntry | None:
    """Of a bulk line's entries (one, but for a row journaled again after a crash), the
    one its account's reference was written with, else the newest."""
    return next(
        (r for r in rows if to_ms(r.time) == ms), max(rows, key=lambda r: r.time, default=None)
    )


class AsyncRedisJournal:
    """The write side for the bulk engine's event loop (`redis.asyncio.Redis`)."""

    def __init__(self, client: aioredis.Redis, days: int) -> None:
        self.client = client
        self.days = days

    async def write_many(self, entries: Iterable[JournalEntry]) -> int:
        """As `RedisJournal.write_many`: one round trip per batch."""
        batch = list(entries)
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            count = queue_writes(pipe, batch, self.days)
            try:
                if count:
                    await pipe.execute()
                return count
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                await self.client.script_load(WRITE_SCRIPT)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """The client is the caller's: nothing of the journal's own to close."""
