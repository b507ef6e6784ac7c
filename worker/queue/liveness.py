"""Which worker is alive, what it holds, and giving back what a dead or cut-off one held.

Every worker process instance (a fresh id at each start: a restarted worker reuses its
node name, so the name alone would not do) keeps, in Redis:

    voicemail:instances         hash    instance -> node name, pid
    voicemail:hb:{instance}     string  heartbeat, renewed every second, TTL `HEARTBEAT_TTL`
    voicemail:held:{instance}   set     delivery tags it received and has not acknowledged
    voicemail:reaped:{instance} string  set once a reaper gave its messages back (a day)
    voicemail:nodes             hash    node name -> the instance it runs as now
    voicemail:beats             hash    instance -> its last beat (ms, Redis's clock)

Each second, in a thread of its own that does nothing else (`worker.queue.heartbeat`), a
worker renews its heartbeat (`beat`); one found reaped goes on under a new identity.
Each second, in the lease thread (`worker.queue.lease`), a worker:
- records the deliveries it holds;
- gives back its own deliveries that Celery dropped (a lost broker connection drops the
  reserved requests; their messages stay in kombu's `unacked` hash): a tag it recorded
  but no longer holds, two ticks in a row, goes back to its queue, or is simply
  forgotten if the job already has its result;
- reaps dead instances: one whose heartbeat lapsed has its deliveries put back in their
  queues and is marked dead, which frees its account locks (`coordination.ordering`
  treats a dead owner's lock as free). An instance whose last beat came before Redis
  restarted, or any lapsed instance seen by a reaper that was itself cut off, waits
  `REAP_GRACE` seconds first, so an outage never makes every worker look dead; one that
  beat since Redis started and stopped is reaped at once.
kombu's visibility timeout stays as the last resort.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ..core import keys, lua
from ..core.connections import text

logger = logging.getLogger(__name__)

HEARTBEAT_TTL = 4.0  # seconds without a beat before an instance counts as dead
REAP_GRACE = 10.0  # seconds after Redis (or the reaper's link to it) came back before reaping
INSTANCES_KEY = keys.INSTANCES
UNACKED = "unacked"  # kombu's default `unacked_key`
UNACKED_INDEX = "unacked_index"  # kombu's default `unacked_index_key`
_BEAT = lua.load(__package__, "beat.lua")
_RECORD_HELD = lua.load(__package__, "record_held.lua")


def heartbeat_key(instance: str) -> str:
    return keys.heartbeat(instance)


def held_key(instance: str) -> str:
    return keys.held(instance)


def dead_key(instance: str) -> str:
    return keys.reaped(instance)


def new_instance_id() -> str:
    return uuid.uuid4().hex[:16]


def redis_ms(client: Any) -> int:
    """Now on Redis's clock, in milliseconds."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def record_received(client: Any, instance: str, tag: str) -> None:
    """Called when a message arrives, before any job runs: a kill right after it is covered."""
    client.sadd(held_key(instance), tag)


def _job_id(raw: bytes | str | None) -> str | None:
    try:
        return str(json.loads(raw)[0]["headers"]["id"]) if raw else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class Liveness:
    """One worker instance's side of it; `tick()` runs every second in the lease thread."""

    def __init__(
        self,
        store: Any,
        broker: Any,
        results: Any,
        *,
        instance: str,
        node: str,
        restore: Callable[[Iterable[str]], None],
        reborn: Callable[[], str] = new_instance_id,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.broker, self.results = store, broker, results
        self.instance, self.node = instance, node
        self._restore = restore
        self._reborn = reborn
        self._clock = clock
        self._missing: dict[str, int] = {}  # tag -> ticks it was seen recorded but not held
        self._ticked_as = instance
        self._healthy_since: float | None = None
        self._outage = False

    def failed(self) -> None:
        """Redis did not answer this tick: reaping waits `REAP_GRACE` once it does again."""
        self._healthy_since = None
        self._outage = True

    def beat(self, client: Any = None) -> bool:
        """The heartbeat, alone in its thread (`worker.queue.heartbeat`) with its own
        `client`, so no other work ever delays it. An instance found dead (cut off, or
        paused, longer than its heartbeat) is refused: what it held went back to the
        queues and its claims are refused, so it goes on under a new identity at once.
        False when it had to."""
        client = client or self.store
        if self._beat_script(client, self.instance):
            return True
        old, self.instance = self.instance, self._reborn()
        logger.warning("this worker was found dead as %s; going on as %s", old, self.instance)
        self._beat_script(client, self.instance)
        return False

    def _beat_script(self, client: Any, instance: str) -> bool:
        script = client.register_script(_BEAT)
        keys_ = [
            heartbeat_key(instance),
            INSTANCES_KEY,
            dead_key(instance),
            keys.NODES,
            keys.BEATS,
        ]
        ttl = int(HEARTBEAT_TTL * 1000)
        return bool(
            script(keys=keys_, args=[instance, ttl, json.dumps({"node": self.node}), self.node])
        )

    def tick(self, held: set[str]) -> None:
        """The lease thread's part, once a second: record what it holds, give back what
        Celery dropped, reap the dead. The heartbeat is not here (`beat`)."""
        now = self._clock()
        instance = self.instance
        if instance != self._ticked_as:  # gone on under a new identity since the last tick
            self._missing.clear()
            self._ticked_as = instance
        script = self.store.register_script(_RECORD_HELD)
        recorded_raw = script(keys=[held_key(instance), dead_key(instance)], args=sorted(held))
        if self._healthy_since is None:
            self._healthy_since = now
        if recorded_raw is None:  # reaped: the heartbeat thread goes on as a new instance
            return
        self._give_back_dropped({text(t) for t in recorded_raw} - held)
        if not self._outage or now - self._healthy_since >= REAP_GRACE:
            self.reap()

    def _give_back_dropped(self, candidates: set[str]) -> None:
        self._missing = {t: self._missing.get(t, 0) + 1 for t in candidates}
        # Two ticks in a row: a message just received may not be in Celery's lists yet.
        due = [t for t, seen in self._missing.items() if seen >= 2]
        if not due:
            return
        raws = self.broker.hmget(UNACKED, due)
        gone = [t for t, raw in zip(due, raws, strict=True) if raw is None]
        dropped = {t: _job_id(raw) for t, raw in zip(due, raws, strict=True) if raw is not None}
        if dropped:
            finished = self._finished({t: j for t, j in dropped.items() if j})
            if finished:
                self._forget(finished)
            again = [t for t in dropped if t not in finished]
            if again:
                logger.warning("giving back %d message(s) this worker no longer holds", len(again))
                self._restore(again)
        self.store.srem(held_key(self.instance), *due)
        for tag in [*gone, *dropped]:
            self._missing.pop(tag, None)

    def _finished(self, jobs: dict[str, str]) -> list[str]:
        if not jobs:
            return []
        metas = self.results.mget([f"celery-task-meta-{j}" for j in jobs.values()])
        return [
            tag
            for tag, meta in zip(jobs, metas, strict=True)
            if meta and json.loads(meta).get("status") in ("SUCCESS", "FAILURE")
        ]

    def _forget(self, tags: list[str]) -> None:
        """The job finished but its acknowledgement was lost with the connection."""
        with self.broker.pipeline(transaction=False) as pipe:
            pipe.hdel(UNACKED, *tags)
            pipe.zrem(UNACKED_INDEX, *tags)
            pipe.execute()

    def reap(self) -> int:
        """Give back the messages of every instance whose heartbeat lapsed; returns how many
        instances were reaped."""
        others = [text(i) for i in self.store.hkeys(INSTANCES_KEY) if text(i) != self.instance]
        if not others:
            return 0
        with self.store.pipeline(transaction=False) as pipe:
            for other in others:
                pipe.exists(heartbeat_key(other))
            alive = pipe.execute()
        lapsed = [o for o, beating in zip(others, alive, strict=True) if not beating]
        if lapsed:
            lapsed = self._past_restart_grace(lapsed)
        reaped = 0
        for other in lapsed:
            if not self.store.set(keys.reap_lock(other), self.instance, nx=True, ex=30):
                continue  # another worker is on it
            tags = [text(t) for t in self.store.smembers(held_key(other))]
            if tags:
                logger.warning(
                    "worker instance %s stopped beating: giving back %d message(s)",
                    other,
                    len(tags),
                )
                self._restore(tags)
            with self.store.pipeline(transaction=True) as pipe:
                # When, on Redis's clock: its locks wait out its requests still in flight.
                pipe.set(dead_key(other), redis_ms(self.store), ex=86_400)
                pipe.delete(held_key(other))
                pipe.hdel(INSTANCES_KEY, other)
                pipe.hdel(keys.BEATS, other)
                pipe.execute()
            reaped += 1
        return reaped

    def _past_restart_grace(self, lapsed: list[str]) -> list[str]:
        """Those of the `lapsed` instances that may be reaped now. One that beat in this
        Redis's life and stopped is dead, however young Redis is. One whose last beat is
        older than Redis's start (a restart: its heartbeat may have expired while Redis was
        down) waits until Redis has been up `REAP_GRACE` seconds, so a live worker has time
        to reconnect and beat again. (This once held back every reap in Redis's first
        `REAP_GRACE` seconds, a worker killed then included.)"""
        uptime = int(self.store.info("server").get("uptime_in_seconds", 0))
        if uptime >= REAP_GRACE:
            return lapsed
        # `uptime_in_seconds` is rounded down: Redis started no later than this.
        started_ms = redis_ms(self.store) - uptime * 1000
        beats = self.store.hmget(keys.BEATS, lapsed)
        return [
            other
            for other, at in zip(lapsed, beats, strict=True)
            if at is not None and int(at) > started_ms
        ]

    def leave(self) -> None:
        """A clean shutdown: stop beating now, so a live worker gives back whatever kombu
        did not, and frees our locks, without waiting for the heartbeat to lapse."""
        self.store.delete(heartbeat_key(self.instance))
