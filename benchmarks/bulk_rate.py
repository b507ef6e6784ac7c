"""Bulk throughput and memory, against the simulator at 20 ms latency, in one run.

    .venv/bin/python benchmarks/bulk_rate.py                     # speed: 10,000 accounts
    .venv/bin/python benchmarks/bulk_rate.py --memory            # memory: 100,000 accounts

Starts Redis, the simulator and the worker exactly as the Procfile's `worker:`
line, then measures:
  (a) this project's bulk of N accounts (`voicemail bulk submit FILE --wait`);
  (b) the hand-written baseline: one Celery task per account, blocking httpx and
      tenacity on a prefork pool of 2 (benchmarks/baseline_app.py), on 500 accounts;
  (c) ceilings: one asyncio loop PATCHing N accounts at the simulator, no queue, with
      httpx over httpx-aiohttp, httpx's own pool, and aiohttp (the engine's client).
Prints accounts/s, the ratios, GETs and read-backs (0 on a clean run), peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis
from httpx_aiohttp import AiohttpTransport

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import stack  # noqa: E402
from worker.core.keys import READBACK  # noqa: E402

BIN = Path(sys.executable).parent
CONCURRENCY = 100  # in flight, as VOICEMAIL_BULK_IN_FLIGHT's default


class PeakRss:
    """Samples a process tree's RSS every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, stack.tree_rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def procfile_worker() -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            argv = shlex.split(line.removeprefix("worker:"))
            # Run the same command from this venv.
            return [str(BIN / argv[0]), *argv[1:]] if (BIN / argv[0]).exists() else argv
    raise SystemExit("Procfile has no worker: line")


def accounts(n: int, start: int = 1) -> list[str]:
    return [f"acct-{i:06d}" for i in range(start, start + n)]


def import_accounts(env: dict[str, str], names: list[str], log_dir: Path) -> None:
    """`voicemail accounts import` of `names`, with the simulator's tokens."""
    csv_path = log_dir / "accounts.csv"
    csv_path.write_text("account,token\n" + "".join(f"{a},tok-{a}\n" for a in names))
    subprocess.run(
        [str(BIN / "voicemail"), "accounts", "import", str(csv_path)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_procfile_worker(
    env: dict[str, str], log_dir: Path, label: str, argv: list[str] | None = None
) -> stack.Service:
    """The worker exactly as the Procfile's `worker:` line starts it (or as `argv`, which
    wraps that line), once it is ready."""
    log = log_dir / f"{label}.log"
    proc = subprocess.Popen(
        argv or procfile_worker(),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115
        start_new_session=True,
    )
    stack.wait_until(lambda: " ready." in log.read_text(), 60, "the Procfile worker")
    return stack.Service(label, proc)


def start_stack(
    log_dir: Path, generate: int, latency_ms: float = 0.0, *, lean: bool = False
) -> tuple[dict[str, str], stack.Service, stack.Service]:
    """A Redis and a simulator of the benchmark's own, and the environment that points the
    project at them (with a fresh secret key): (env, redis, simulator)."""
    redis_service = stack.start_redis(log_dir)
    sim = stack.start_simulator(log_dir, latency_ms=latency_ms, generate=generate, lean=lean)
    env = {
        **os.environ,
        "REDIS_URL": redis_service.url,
        "PLUSOFON_API_URL": sim.url,
        "VOICEMAIL_SECRET_KEY": secrets.token_urlsafe(32),
    }
    return env, redis_service, sim


def submit_and_wait(env: dict[str, str], path: Path) -> tuple[dict[str, Any], float, float]:
    """`voicemail bulk submit FILE --wait`, as a user runs it: its summary, the seconds
    from the command's start to its exit, and the producer's peak RSS (MB). Raises
    SystemExit unless every row succeeded."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "voicemail"), "bulk", "submit", str(path), "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rss = PeakRss(proc.pid)
    out, _ = proc.communicate(timeout=6 * 3600)
    elapsed = time.perf_counter() - started
    peak = rss.stop()
    lines = out.strip().splitlines()
    summary: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if summary.get("state") != "DONE" or summary.get("failed"):
        raise SystemExit(f"bulk did not finish cleanly: {out}")
    return summary, elapsed, peak


def run_bulk(env: dict[str, str], names: list[str], tmp: Path) -> tuple[float, float, float]:
    """Submit with the CLI, as a user would.

    Returns (seconds from the command's start to DONE, seconds from the bulk's creation
    to its last row, that is without the CLI's interpreter start-up; producer peak RSS).
    """
    path = tmp / f"bulk-{len(names)}.csv"
    with path.open("w") as fh:
        fh.write("account,send,email\n")
        for name in names:
            fh.write(f"{name},true,{name}@new.example.com\n")
    summary, elapsed, peak = submit_and_wait(env, path)
    status = subprocess.run(
        [str(BIN / "voicemail"), "bulk", "status", summary["bulk_id"]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    times = json.loads(status)
    bulk_seconds = _seconds(times["finished_at"]) - _seconds(times["created_at"])
    return elapsed, bulk_seconds, peak


def _seconds(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


BASELINE_WORKER = (
    "-A benchmarks.baseline_app worker --pool prefork --concurrency 2 --loglevel WARNING"
    " -Q baseline --without-mingle --without-gossip"
)


def run_baseline(env: dict[str, str], sim_url: str, names: list[str], log_dir: Path) -> float:
    env = {**env, "BASELINE_REDIS_URL": env["REDIS_URL"], "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [str(BIN / "celery"), *shlex.split(BASELINE_WORKER)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(log_dir / "baseline.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        os.environ["BASELINE_REDIS_URL"] = env["REDIS_URL"]
        os.environ["PLUSOFON_API_URL"] = sim_url
        from benchmarks.baseline_app import app as baseline

        stack.wait_until(lambda: bool(baseline.control.ping(timeout=0.5)), 60, "baseline worker")
        started = time.perf_counter()
        results = [
            baseline.send_task(
                "baseline.update", args=[f"tok-{n}", True, f"{n}@b.example.com"], queue="baseline"
            )
            for n in names
        ]
        for result in results:
            result.get(timeout=300)
        return time.perf_counter() - started
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)


async def _drive(names: list[str], patch: Callable[[str], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(name: str) -> None:
        async with gate:
            await patch(name)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in names))
    return time.perf_counter() - started


def body(name: str) -> dict[str, object]:
    return {"send": True, "email": f"{name}@ceiling.example.com"}


def headers(name: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer tok-{name}",
        "Client": "10553",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


async def ceiling_httpx(url: str, names: list[str], transport: str) -> float:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    kwargs: dict[str, object] = {"limits": limits}
    if transport == "aiohttp":
        kwargs = {"transport": AiohttpTransport(limits=limits)}
    async with httpx.AsyncClient(base_url=url, timeout=30, **kwargs) as client:  # type: ignore[arg-type]

        async def patch(name: str) -> None:
            response = await client.patch(
                "/api/v1/voicemail", json=body(name), headers=headers(name)
            )
            response.raise_for_status()

        return await _drive(names, patch)


async def ceiling_aiohttp(url: str, names: list[str]) -> float:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as session:

        async def patch(name: str) -> None:
            async with session.patch(
                "/api/v1/voicemail", json=body(name), headers=headers(name)
            ) as r:
                r.raise_for_status()
                await r.read()

        return await _drive(names, patch)


def run_loop(coro: Awaitable[float]) -> float:
    """On the same event loop as the engine processes (uvloop where installed), to be fair."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--baseline-accounts", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--memory", action="store_true", help="100,000 accounts, bulk only")
    args = parser.parse_args()
    n = args.accounts or (100_000 if args.memory else 10_000)
    base_n = 0 if args.memory else args.baseline_accounts

    with stack.temp_dir("voicemail-bench-") as log_dir:
        env, redis_service, sim = start_stack(log_dir, n + base_n, args.latency_ms)
        services = [sim, redis_service]
        try:
            names = accounts(n)
            import_accounts(env, names, log_dir)
            argv = procfile_worker()
            worker = start_procfile_worker(env, log_dir, "worker")
            services.insert(0, worker)
            worker_rss = PeakRss(worker.process.pid)
            cli_seconds, bulk_seconds, producer_rss = run_bulk(env, names, log_dir)
            worker_peak = worker_rss.stop()
            sent, waiting = (
                stack.SimulatorControl(sim.url).stats(),
                redis.Redis.from_url(redis_service.url),
            )
            gets, pending = sent["total"] - sent["patch_requests"], waiting.zcard(READBACK)
            print(f"GETs: {gets}; read-backs scheduled: {pending} (a clean bulk: 0 and 0)")
            bulk_rate = n / bulk_seconds
            print(f"worker: {' '.join(shlex.quote(a) for a in argv[1:])}")
            print(
                f"    `voicemail bulk submit FILE --wait`: {cli_seconds:.1f} s in all "
                f"({n / cli_seconds:.0f} accounts/s counting the CLI's start-up)"
            )
            print(
                f"(a) bulk of {n:,} accounts:           {bulk_rate:8.0f} accounts/s "
                f"({bulk_seconds:.1f} s, bulk created to DONE)"
            )
            print(
                f"    peak RSS: worker {worker_peak:.0f} MB (main + pool + engine processes), "
                f"producer {producer_rss:.0f} MB"
            )
            if args.memory:
                ok = worker_peak < 300 and producer_rss < 150
                verdict = "met" if ok else "NOT met"
                print(f"memory target (worker < 300 MB, producer < 150 MB): {verdict}")
                return 0

            base_seconds = run_baseline(env, sim.url, accounts(base_n, start=n + 1), log_dir)
            base_rate = base_n / base_seconds
            print(f"(b) baseline, {base_n} tasks, prefork 2:    {base_rate:8.0f} accounts/s")
            ceilings = {}
            for label, coro in (
                ("httpx + httpx-aiohttp", ceiling_httpx(sim.url, names, "aiohttp")),
                ("httpx, own async pool", ceiling_httpx(sim.url, names, "httpx")),
                ("aiohttp alone (the engine's client)", ceiling_aiohttp(sim.url, names)),
            ):
                ceilings[label] = n / run_loop(coro)
                print(f"(c) ceiling, {label:36s} {ceilings[label]:8.0f} accounts/s")
            httpx_ceiling = ceilings["httpx + httpx-aiohttp"]
            aiohttp_ceiling = ceilings["aiohttp alone (the engine's client)"]
            print()
            print(f"bulk / baseline:          {bulk_rate / base_rate:6.1f}x   (target >= 30x)")
            print(f"bulk / httpx ceiling:     {bulk_rate / httpx_ceiling:6.2f}    (target >= 0.8)")
            print(f"bulk / aiohttp ceiling:   {bulk_rate / aiohttp_ceiling:6.2f}")
        finally:
            for service in services:
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
