"""Round trip of single jobs: enqueue -> worker -> simulator -> result, through the producer API.

    .venv/bin/python benchmarks/roundtrip.py [--jobs 200] [--pool threads --concurrency 16]

Starts its own Redis, the simulator at 0 ms latency and one worker as the Procfile
runs it, then times `jobs` sequential `voicemail.get` jobs (enqueue_get + wait) and
the same number of direct GETs at the simulator. Prints median and p95 of both and
the queue's overhead (median round trip minus median direct request).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import stack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    median, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
    return f"median {median:6.2f} ms   p95 {p95:6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=32)  # as the Procfile
    args = parser.parse_args()

    with stack.temp_dir("voicemail-bench-") as log_dir:
        redis_service = stack.start_redis(log_dir)
        sim_service = stack.start_simulator(log_dir)
        env = {
            "REDIS_URL": redis_service.url,
            "PLUSOFON_API_URL": sim_service.url,
            "VOICEMAIL_SECRET_KEY": secrets.token_urlsafe(32),
        }
        os.environ.update(env)
        worker = stack.start_worker(
            log_dir, dict(os.environ), name="bench", pool=args.pool, concurrency=args.concurrency
        )
        try:
            from tasks import enqueue_get, wait
            from tasks.producer import credential_store

            sim = stack.SimulatorControl(sim_service.url)
            sim.add_accounts([{"account": "bench", "token": "tok-bench"}])
            credential_store().put("bench", "tok-bench")

            for _ in range(20):  # warm up connections and imports on both sides
                wait(enqueue_get("bench"), timeout=30)
            roundtrips = []
            for _ in range(args.jobs):
                started = time.perf_counter()
                status = wait(enqueue_get("bench"), timeout=30)
                roundtrips.append(time.perf_counter() - started)
                assert status.ok, status

            headers = {
                "Authorization": "Bearer tok-bench",
                "Client": "10553",
                "Accept": "application/json",
            }
            direct = []
            with httpx.Client(base_url=sim_service.url, headers=headers) as client:
                for _ in range(20):
                    client.get("/api/v1/voicemail")
                for _ in range(args.jobs):
                    started = time.perf_counter()
                    client.get("/api/v1/voicemail").raise_for_status()
                    direct.append(time.perf_counter() - started)
            sim.close()
        finally:
            worker.stop()
            sim_service.stop()
            redis_service.stop()

    overhead = statistics.median(roundtrips) - statistics.median(direct)
    print(f"worker: --pool {args.pool} --concurrency {args.concurrency}; {args.jobs} jobs each")
    print(f"round trip (enqueue_get -> wait): {ms(roundtrips)}")
    print(f"direct GET at the simulator:      {ms(direct)}")
    print(
        f"queue overhead (median):          {overhead * 1000:6.2f} ms   "
        f"(target < 15 ms: {'met' if overhead < 0.015 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
