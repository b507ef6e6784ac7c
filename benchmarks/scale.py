"""A million accounts: import rate, bulk rate by size, Redis memory, RSS and CPU per row.

    .venv/bin/python benchmarks/scale.py --accounts 1000000      # about half an hour here
    .venv/bin/python benchmarks/scale.py --accounts 100000       # a quicker look

Starts Redis, the simulator in lean mode (no per-account history) at 0 ms latency, and
the worker exactly as the Procfile's `worker:` line (defaults, nothing tuned), then:
  1. `voicemail accounts import` of N accounts (rate);
  2. a first bulk over all N accounts, which creates their ordering state (memory
     before, at peak and after: what the ordering state costs per account);
  3. bulks of 10,000, 100,000 and N rows, each timed from `voicemail bulk submit FILE
     --wait` start to exit, with the CPU-seconds per 1,000 rows of the worker's
     processes and of redis-server together;
  4. Redis used memory before, at peak and after the last (N-row) bulk, over accounts
     whose ordering state already exists: the bytes each row leaves behind;
  5. a bare loop: one process, one aiohttp session, the engine's event loop, 100 PATCHes
     in flight, CPU-seconds per 1,000 requests, against the same simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bulk_rate import (  # noqa: E402
    CONCURRENCY,
    PeakRss,
    accounts,
    body,
    headers,
    procfile_worker,
    run_loop,
    start_procfile_worker,
    start_stack,
    submit_and_wait,
)
from simulator import stack  # noqa: E402

BIN = Path(sys.executable).parent


class PeakMemory:
    """Samples Redis's used_memory every 100 ms in a thread."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.peak = client, used(client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, used(self.client))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def settle_memory(client: redis.Redis) -> int:
    """used_memory once the bulk's expired or deleted keys are gone and it stops moving."""
    last, stable_since = used(client), time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - stable_since < 2:
        time.sleep(0.2)
        now = used(client)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def write_bulk(path: Path, names: list[str], tag: str) -> None:
    with path.open("w") as fh:
        fh.write("account,send,email\n")
        for name in names:
            fh.write(f"{name},true,{name}@{tag}.example.com\n")


class Bulk:
    """One `voicemail bulk submit FILE --wait`, timed from start to exit."""

    def __init__(self, env: dict[str, str], path: Path, worker_pid: int, redis_pid: int) -> None:
        worker_before = stack.tree_cpu_seconds(worker_pid)
        redis_before = stack.tree_cpu_seconds(redis_pid)
        self.summary, self.seconds, self.producer_rss = submit_and_wait(env, path)
        worker_cpu = stack.tree_cpu_seconds(worker_pid) - worker_before
        redis_cpu = stack.tree_cpu_seconds(redis_pid) - redis_before
        self.rows = int(self.summary["total"])
        self.rate = self.rows / self.seconds
        self.cpu_per_1000 = (worker_cpu + redis_cpu) / self.rows * 1000
        self.redis_per_1000 = redis_cpu / self.rows * 1000


async def bare_loop(url: str, names: list[str]) -> float:
    """CPU-seconds per 1,000 PATCHes from one aiohttp session, 100 in flight."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as session:

        async def patch(name: str) -> None:
            async with (
                gate,
                session.patch(
                    "/api/v1/voicemail", json=body(name), headers=headers(name)
                ) as response,
            ):
                response.raise_for_status()
                await response.read()

        cpu = time.process_time()
        await asyncio.gather(*(patch(n) for n in names))
        return (time.process_time() - cpu) / len(names) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--bare-requests", type=int, default=100_000)
    args = parser.parse_args()
    n = args.accounts

    with stack.temp_dir("voicemail-scale-") as log_dir:
        env, redis_service, sim = start_stack(log_dir, n, args.latency_ms, lean=True)
        client = redis.Redis.from_url(redis_service.url)
        services = [sim, redis_service]
        redis_pid = redis_service.process.pid
        try:
            names = accounts(n)
            csv_path = log_dir / "accounts.csv"
            with csv_path.open("w") as fh:
                fh.write("account,token\n")
                fh.writelines(f"{a},tok-{a}\n" for a in names)
            empty = used(client)
            started = time.perf_counter()
            importer = subprocess.Popen(
                [str(BIN / "voicemail"), "accounts", "import", str(csv_path)],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            import_rss = PeakRss(importer.pid)
            if importer.wait() != 0:
                raise SystemExit("the import failed")
            import_seconds = time.perf_counter() - started
            import_peak = import_rss.stop()
            store_bytes = used(client) - empty

            worker = start_procfile_worker(env, log_dir, "worker")
            services.insert(0, worker)
            worker_pid = worker.process.pid
            worker_rss = PeakRss(worker_pid)

            # The first bulk creates every account's ordering state.
            path = log_dir / "first.csv"
            write_bulk(path, names, "first")
            before = settle_memory(client)
            first = Bulk(env, path, worker_pid, redis_pid)
            after_first = settle_memory(client)
            keys_per_account = (int(client.dbsize()) - 1) / n  # less the credential store

            runs: list[Bulk] = []
            sizes = [s for s in (10_000, 100_000) if s < n] + [n]
            last_before = last_peak = last_after = 0
            for size in sizes:
                path = log_dir / f"bulk-{size}.csv"
                write_bulk(path, names[:size], f"run{size}")
                if size == n:
                    last_before = settle_memory(client)
                    peak = PeakMemory(client)
                runs.append(Bulk(env, path, worker_pid, redis_pid))
                if size == n:
                    last_peak = peak.stop()
                    last_after = settle_memory(client)
            worker_peak = worker_rss.stop()

            bare = run_loop(bare_loop(sim.url, names[: min(n, args.bare_requests)]))

            argv = procfile_worker()
            mb = 1024 * 1024
            print(f"worker: {' '.join(shlex.quote(a) for a in argv[1:])} (defaults)")
            print(f"simulator: lean, {args.latency_ms:.0f} ms latency; {n:,} accounts")
            print(
                f"import:   {n / import_seconds:9,.0f} accounts/s ({import_seconds:.1f} s, "
                f"peak RSS {import_peak:.0f} MB); the store: {store_bytes / n:.0f} bytes/account"
            )
            ordering = (after_first - before) / n
            print(
                f"first bulk ({n:,} rows, creates ordering state): {first.rate:,.0f} rows/s; "
                f"Redis grew {ordering:.0f} bytes/account; {keys_per_account:.2f} keys/account"
            )
            for run in runs:
                print(
                    f"bulk {run.rows:>9,} rows: {run.rate:7,.0f} rows/s ({run.seconds:7.1f} s), "
                    f"CPU {run.cpu_per_1000:.2f} s per 1,000 rows (worker + redis-server; "
                    f"redis-server {run.redis_per_1000:.2f})"
                )
            last = runs[-1]
            retained = (last_after - last_before) / last.rows
            print(
                f"Redis used memory, {last.rows:,}-row bulk: before {last_before / mb:.0f} MB, "
                f"peak {last_peak / mb:.0f} MB, after {last_after / mb:.0f} MB: "
                f"{retained:.1f} bytes retained per row (target <= 40)"
            )
            print(
                f"peak RSS: worker {worker_peak:.0f} MB (target < 300), "
                f"producer {max(r.producer_rss for r in runs):.0f} MB (target < 150)"
            )
            print(f"bare aiohttp loop: CPU {bare:.2f} s per 1,000 requests")
            print()
            print(
                f"{last.rows:,}-row rate / 10,000-row rate: {last.rate / runs[0].rate:.2f} "
                "(target >= 0.9)"
            )
            print(
                f"CPU per row / bare loop's per request: {last.cpu_per_1000 / bare:.2f} "
                "(target <= 1.5)"
            )
        finally:
            client.close()
            for service in services:
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
