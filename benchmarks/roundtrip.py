"""Single jobs against the queue's own floor, in one run.

    .venv/bin/python benchmarks/roundtrip.py [--jobs 300] [--burst 2000]

Starts its own Redis, the simulator at 0 ms latency and the worker exactly as the
Procfile's `worker:` line (defaults), then, alternating so that noise hits all alike:
  - a `voicemail.get` job through the producer API (`enqueue_get` then `wait`);
  - a `voicemail.get` job sent by name by a plain Celery client (`send_task`, `.get()`);
  - a `voicemail.ping` (a task that does nothing) sent and awaited the same plain way;
  - a direct GET at the simulator.
The floor is the ping's p50 plus the direct GET's p50: what any job must cost. For
context, a bare Celery worker (benchmarks/baseline_app.py, threads 32, none of this
project's code) answers a no-op on the same Redis, alternating with the rest. Then
throughput: `--burst` `voicemail.get` jobs enqueued at once, and as many pings, each
timed from the first enqueue to the last result stored.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bulk_rate import procfile_worker, start_procfile_worker, start_stack  # noqa: E402
from simulator import stack  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p95(values: list[float]) -> float:
    return percentile(values, 0.95) * 1000


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def burst(client: Celery, name: str, args: list[object], n: int) -> float:
    """Jobs per second from the first enqueue to the last result stored (its date_done)."""
    started = datetime.datetime.now(datetime.UTC)
    results = [client.send_task(name, args=args) for _ in range(n)]
    for result in results:
        result.get(timeout=300)
    stored = [result.date_done for result in results]
    last = max(d if d.tzinfo else d.replace(tzinfo=datetime.UTC) for d in stored if d is not None)
    return n / max((last - started).total_seconds(), 1e-6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()

    with stack.temp_dir("voicemail-roundtrip-") as log_dir:
        env, redis_service, sim_service = start_stack(log_dir, generate=0)
        os.environ.update(env)
        worker = start_procfile_worker(dict(os.environ), log_dir, "worker")
        bare = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "benchmarks.baseline_app",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "32",
                "-Q",
                "baseline",
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
            ],
            env={**os.environ, "BASELINE_REDIS_URL": redis_service.url, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(log_dir / "bare.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        plain = Celery("other-service", broker=redis_service.url, backend=redis_service.url)
        plain.conf.update(task_serializer="json", accept_content=["json"], result_extended=True)
        try:
            from tasks import enqueue_get, wait
            from tasks.producer import credential_store

            sim = stack.SimulatorControl(sim_service.url)
            sim.add_accounts([{"account": "bench", "token": "tok-bench"}])
            credential_store().put("bench", "tok-bench")
            headers = {"Authorization": "Bearer tok-bench", "Client": "10553"}
            http = httpx.Client(base_url=sim_service.url, headers=headers)

            def job() -> None:
                assert wait(enqueue_get("bench"), timeout=30).ok

            def by_name() -> None:
                plain.send_task("voicemail.get", args=["bench"]).get(timeout=30)

            def ping() -> None:
                assert plain.send_task("voicemail.ping").get(timeout=30) == "pong"

            def direct() -> None:
                http.get("/api/v1/voicemail").raise_for_status()

            def bare_noop() -> None:
                plain.send_task("baseline.noop", queue="baseline").get(timeout=30)

            steps = {"job": job, "by_name": by_name, "ping": ping, "direct": direct}
            steps["bare"] = bare_noop
            samples: dict[str, list[float]] = {label: [] for label in steps}
            for _ in range(20):  # warm up connections and imports on every side
                for step in steps.values():
                    step()
            for _ in range(args.jobs):
                for label, step in steps.items():
                    samples[label].append(timed(step))
            jobs_rate = burst(plain, "voicemail.get", ["bench"], args.burst)
            pings_rate = burst(plain, "voicemail.ping", [], args.burst)
            http.close()
            sim.close()
        finally:
            plain.close()
            bare.terminate()
            bare.wait(30)
            worker.stop()
            sim_service.stop()
            redis_service.stop()

    floor = p50(samples["ping"]) + p50(samples["direct"])
    argv = procfile_worker()
    print(f"worker: {' '.join(argv[1:])} (defaults); {args.jobs} of each, alternating")
    print(
        f"job, producer API (enqueue_get -> wait): p50 {p50(samples['job']):6.2f} ms"
        f"   p95 {p95(samples['job']):6.2f} ms"
    )
    print(
        f"job, sent by name (send_task -> get):    p50 {p50(samples['by_name']):6.2f} ms"
        f"   p95 {p95(samples['by_name']):6.2f} ms"
    )
    print(f"voicemail.ping (no-op), sent by name:    p50 {p50(samples['ping']):6.2f} ms")
    print(f"direct GET at the simulator:             p50 {p50(samples['direct']):6.2f} ms")
    print(f"bare Celery no-op (none of our code):    p50 {p50(samples['bare']):6.2f} ms")
    print(f"floor (ping p50 + direct GET p50):           {floor:6.2f} ms")
    print()
    print(f"job / floor, producer API: {p50(samples['job']) / floor:5.2f}   (target <= 1.3)")
    print(f"job / floor, by name:      {p50(samples['by_name']) / floor:5.2f}   (target <= 1.3)")
    print(
        f"throughput, {args.burst} at once: voicemail.get {jobs_rate:7.0f}/s, "
        f"voicemail.ping {pings_rate:7.0f}/s: {jobs_rate / pings_rate:5.2f} (target >= 0.7)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
