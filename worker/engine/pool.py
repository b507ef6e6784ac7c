"""The bulk engine: runs chunks of accounts concurrently on asyncio, on every core.

The Celery worker runs a thread pool (good for single jobs, one core). A chunk
task hands its chunk to a small pool of engine processes (by default one per
CPU this process may use, `usable_cpus`; `VOICEMAIL_BULK_PROCESSES`), each with
one event loop and one `EngineContext` (HTTP and Redis connection pools) built
when the process starts and kept for its life. With `VOICEMAIL_BULK_PROCESSES=0`, or where child
processes are not allowed (a prefork pool's children are daemons), chunks run
inline in the calling thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import functools
import gc
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..coordination.ordering import new_lock_owner
from ..core.errors import EngineUnavailable
from ..core.logs import install_redaction
from ..core.settings import Settings, get_settings
from .chunk_run import process_chunk
from .engine_context import EngineContext
from .recorder import ChunkReport
from .row_send import row_deadline

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a process gets when its parent dies

GC_THRESHOLDS = (20_000, 20, 50)


def _cgroup_cpu_limit(root: Path) -> float | None:
    """CPUs' worth of time the cgroup quota allows (v2 `cpu.max`, else v1 CFS), or None."""
    cgroup = root / "sys" / "fs" / "cgroup"
    try:
        quota, _, period = (cgroup / "cpu.max").read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100_000)
    except (OSError, ValueError):
        pass
    for v1 in ("cpu", "cpu,cpuacct"):
        try:
            quota_us = int((cgroup / v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((cgroup / v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def usable_cpus(root: Path, affinity: int) -> int:
    """The CPUs this process may really use: its affinity (`taskset`, a container's cpuset)
    capped by the cgroup CPU quota (`docker --cpus`), a fraction rounded up. os.cpu_count()
    counts the host's CPUs, which a container or a pinned process cannot have."""
    limit = _cgroup_cpu_limit(root)
    cpus = affinity if limit is None else min(affinity, math.ceil(limit))
    return max(1, cpus)


def default_processes() -> int:
    """One engine process per usable CPU (the default without VOICEMAIL_BULK_PROCESSES)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 1
    return usable_cpus(Path("/"), affinity)


def _die_with_parent(parent: int) -> None:
    """An engine process never goes on sending for a worker that is gone: the kernel kills
    it with its parent (Linux), and a watchdog thread covers other systems."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="engine-parent-watch", daemon=True).start()


class _EngineProcess:
    """An engine process's own event loop and context, kept for the process's life."""

    def __init__(self) -> None:
        try:
            import uvloop
        except ImportError:  # optional: the engine runs on asyncio's own loop too
            self.loop = asyncio.new_event_loop()
        else:
            self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.ctx = EngineContext(get_settings())

    def run(self, bulk_id: str, number: int, final: bool, lock_owner: str) -> ChunkReport:
        chunk = process_chunk(self.ctx, bulk_id, number, final=final, lock_owner=lock_owner)
        return self.loop.run_until_complete(chunk)


@functools.cache
def _this_process() -> _EngineProcess:
    """Built once per engine process, by `_child_init`."""
    return _EngineProcess()


def _child_init(parent: int) -> None:
    _die_with_parent(parent)
    logging.basicConfig(level=logging.WARNING, format="[engine %(process)d] %(message)s")
    install_redaction()
    _this_process()
    # A chunk allocates a few objects per row (a task, a coroutine, its closures): at the
    # default thresholds the collector ran every few hundred rows and walked every live
    # object, about a tenth of the engine's CPU (py-spy, benchmarks/scale.py). What exists
    # now lives as long as the process: out of the collector's way for good.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _child_run(bulk_id: str, number: int, final: bool, lock_owner: str) -> ChunkReport:
    return _this_process().run(bulk_id, number, final, lock_owner)


def _child_ping() -> int:
    return os.getpid()


async def _inline(
    settings: Settings, bulk_id: str, number: int, final: bool, lock_owner: str
) -> ChunkReport:
    ctx = EngineContext(settings)
    try:
        return await process_chunk(ctx, bulk_id, number, final=final, lock_owner=lock_owner)
    finally:
        await ctx.aclose()


# A pool just spawned, and each of its processes' first answer (its pid).
_Launched = tuple[concurrent.futures.ProcessPoolExecutor, list[concurrent.futures.Future[int]]]


class Engine:
    """A pool of engine processes; a broken pool (a process died) is replaced on next use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        wanted = settings.bulk_processes
        self.processes = default_processes() if wanted is None else wanted
        if self.processes and multiprocessing.current_process().daemon:
            logger.info("bulk engine runs inline: a prefork child cannot start processes")
            self.processes = 0
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        # Launched, not yet known to be up.
        self._launched: _Launched | None = None

    def launch(self) -> None:
        """Spawn every process and return at once: they import while the worker goes on
        starting (connecting, mingling), and `start` or the first chunk waits for them.
        Call it from a thread that lives as long as the processes: they are bound to die
        with the thread that spawned them (`_die_with_parent`)."""
        if not self.processes:
            return
        with self._lock:
            if self._pool is None and self._launched is None:
                self._launched = self._spawn()

    def start(self) -> None:
        """Every process up now (the executor spawns lazily), so the first chunk of the
        first bulk does not pay for interpreter start-up."""
        self._executor()

    def _spawn(self) -> _Launched:
        pool = concurrent.futures.ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(os.getpid(),),
        )
        # One submit spawns one process while none is idle: these start them all.
        return pool, [pool.submit(_child_ping) for _ in range(self.processes)]

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if not self.processes:
            return None
        with self._lock:
            if self._pool is None:
                pool, answers = self._launched or self._spawn()
                self._launched = None
                for ready in answers:
                    ready.result()
                self._pool = pool
            return self._pool

    def run_chunk(
        self, bulk_id: str, number: int, *, final: bool, lock_owner: str | None = None
    ) -> ChunkReport:
        lock_owner = lock_owner or new_lock_owner("inline")
        pool = self._executor()
        if pool is None:
            return asyncio.run(_inline(self.settings, bulk_id, number, final, lock_owner))
        future = pool.submit(_child_run, bulk_id, number, final, lock_owner)
        try:
            return future.result(timeout=self.chunk_timeout())
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise EngineUnavailable(f"a bulk engine process died: {exc}") from None
        except concurrent.futures.TimeoutError:
            # Its process is stuck: replace the pool (the chunk's rows stay unrecorded).
            self._discard(pool, kill=True)
            raise EngineUnavailable(
                f"bulk {bulk_id} chunk {number} ran past {self.chunk_timeout():.0f}s"
            ) from None

    def chunk_timeout(self) -> float:
        """Rows run `bulk_in_flight` at a time, each within `row_deadline`."""
        rounds = -(-self.settings.bulk_chunk_size // self.settings.bulk_in_flight)
        return row_deadline(self.settings) * rounds + 60

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor, kill: bool = False) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        if kill:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        try:
            pool.shutdown(wait=False, cancel_futures=True)
        except Exception:  # a broken pool may refuse a clean shutdown; it is gone anyway
            logger.debug("engine shutdown failed", exc_info=True)

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is None and self._launched is not None:
                pool, _ = self._launched
            self._launched = None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
