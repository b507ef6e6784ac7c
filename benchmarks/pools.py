"""Which Celery pool suits single jobs (blocking HTTP, I/O-bound) on this machine.

    .venv/bin/python benchmarks/pools.py [--jobs 1000] [--latency-ms 20]

For each pool and concurrency, starts a worker, enqueues `jobs` voicemail.update
jobs at once against the simulator at `latency-ms`, and prints jobs/s and the
worker's resident memory (main process plus pool children). The Procfile's
`worker:` line uses the winner.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import stack

CONFIGS = [
    ("prefork", 2),
    ("prefork", 8),
    ("threads", 8),
    ("threads", 16),
    ("threads", 32),
    ("threads", 64),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--configs",
        default=",".join(f"{p}:{c}" for p, c in CONFIGS),
        help="pool:concurrency pairs, comma-separated",
    )
    args = parser.parse_args()
    configs = [(p, int(c)) for p, c in (item.split(":") for item in args.configs.split(","))]
    accounts = [f"acct-{i:06d}" for i in range(1, args.jobs + 1)]
    rows = []
    with stack.temp_dir("voicemail-bench-") as log_dir:
        redis_service = stack.start_redis(log_dir)
        sim_service = stack.start_simulator(log_dir, latency_ms=args.latency_ms, generate=args.jobs)
        os.environ.update(
            {
                "REDIS_URL": redis_service.url,
                "PLUSOFON_API_URL": sim_service.url,
                "VOICEMAIL_SECRET_KEY": secrets.token_urlsafe(32),
            }
        )
        from tasks import enqueue_update, wait
        from tasks.producer import credential_store
        from worker.store.credentials import AccountRow

        credential_store().put_many(AccountRow(a, f"tok-{a}") for a in accounts)
        try:
            for pool, concurrency in configs:
                worker = stack.start_worker(
                    log_dir,
                    dict(os.environ),
                    name=f"{pool}{concurrency}",
                    pool=pool,
                    concurrency=concurrency,
                )
                try:
                    started = time.perf_counter()
                    ids = [enqueue_update(a, True, f"{a}@bench.example.com") for a in accounts]
                    peak = 0.0
                    for job in ids:
                        assert wait(job, timeout=120).ok
                        peak = max(peak, stack.tree_rss_mb(worker.process.pid))
                    elapsed = time.perf_counter() - started
                finally:
                    worker.stop()
                rows.append((pool, concurrency, args.jobs / elapsed, peak))
                print(
                    f"{pool:8s} -c {concurrency:3d}: {args.jobs / elapsed:7.1f} jobs/s   "
                    f"worker RSS {peak:6.1f} MB",
                    flush=True,
                )
        finally:
            sim_service.stop()
            redis_service.stop()
    best = max(rows, key=lambda r: r[2])
    print(f"fastest: --pool {best[0]} --concurrency {best[1]} ({best[2]:.1f} jobs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
