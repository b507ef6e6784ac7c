"""The journal's cost in a real bulk: the bulk rate with the journal on and off, in one
run, and the bytes a journal entry and a plan's row take in Redis.

    .venv/bin/python benchmarks/journal_rate.py [--accounts 10000] [--rounds 3]
    .venv/bin/python benchmarks/journal_rate.py --plan-rows 100000 --rounds 0

Starts Redis, the simulator (20 ms latency) and the worker as the Procfile's `worker:`
line, as benchmarks/bulk_rate.py does. Each round submits a bulk of N accounts with
`VOICEMAIL_JOURNAL=off`, then one of N others with it on (a worker started for each
setting, so the two alternate on one machine's moment), and compares the rates from
the bulk's creation to its last row. Then it sums `MEMORY USAGE` over the journal's keys
(bytes per entry of a bulk row, kept by account and by bulk) and, with `--plan-rows`,
over a plan's keys once `voicemail bulk plan` of that many rows is made (bytes per row).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bulk_rate import (
    BIN,
    accounts,
    import_accounts,
    run_bulk,
    start_procfile_worker,
    start_stack,
)

from simulator import stack
from worker.core.keys import JOURNAL_PREFIX, BulkKeys


def key_bytes(client: redis.Redis, pattern: str) -> tuple[int, int]:
    """(keys, bytes) of the keys matching `pattern`, MEMORY USAGE with every element."""
    count = total = 0
    for key in client.scan_iter(match=pattern, count=1000):
        count += 1
        total += int(client.memory_usage(key, samples=0) or 0)
    return count, total


def bulk_with(
    env: dict[str, str], journal: str, names: list[str], log_dir: Path, redis_pid: int
) -> tuple[float, float]:
    """One bulk of `names` run by a worker started with VOICEMAIL_JOURNAL=journal: its
    rows/s, and the CPU ms per row of the worker's processes and Redis together (the
    figure a busy machine does not blur)."""
    worker_env = {**env, "VOICEMAIL_JOURNAL": journal}
    worker = start_procfile_worker(worker_env, log_dir, f"worker-{journal}")
    try:
        pids = (worker.process.pid, redis_pid)
        before = [stack.tree_cpu_seconds(pid) for pid in pids]
        _, bulk_seconds, _ = run_bulk(worker_env, names, log_dir)
        spent = [stack.tree_cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    finally:
        worker.stop()
    print(
        f"    journal {journal}: CPU ms/row worker {1000 * spent[0] / len(names):.3f}, "
        f"Redis {1000 * spent[1] / len(names):.3f}"
    )
    return len(names) / bulk_seconds, 1000 * sum(spent) / len(names)


def rates(env: dict[str, str], n: int, rounds: int, log_dir: Path, redis_pid: int) -> None:
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for round_ in range(rounds):
        start = 1 + round_ * 2 * n
        for offset, journal in enumerate(("off", "on") if round_ % 2 == 0 else ("on", "off")):
            names = accounts(n, start + offset * n)
            runs[journal].append(bulk_with(env, journal, names, log_dir, redis_pid))
        print(
            f"round {round_ + 1}: "
            + ", ".join(
                f"journal {j} {r[-1][0]:6.0f} rows/s {r[-1][1]:.3f} CPU ms/row"
                for j, r in runs.items()
            )
        )
    best = {j: max(rate for rate, _ in r) for j, r in runs.items()}
    median = {j: statistics.median(rate for rate, _ in r) for j, r in runs.items()}
    cpu = {j: statistics.median(c for _, c in r) for j, r in runs.items()}
    print(
        f"bulk of {n:,} rows, {rounds} rounds: best off {best['off']:.0f}/s, on {best['on']:.0f}/s "
        f"(on/off {best['on'] / best['off']:.3f}); medians {median['off']:.0f} / "
        f"{median['on']:.0f} ({median['on'] / median['off']:.3f}); CPU ms/row (worker + Redis) "
        f"off {cpu['off']:.3f}, on {cpu['on']:.3f} (off/on {cpu['off'] / cpu['on']:.3f}); "
        "target: on >= 0.9 x off"
    )


def journal_bytes(client: redis.Redis, entries: int) -> None:
    keys, total = key_bytes(client, JOURNAL_PREFIX + "*")
    if entries:
        print(
            f"journal in Redis: {entries:,} bulk-row entries in {keys:,} keys, "
            f"{total:,} bytes: {total / entries:.0f} bytes per entry (by account and by bulk)"
        )


def plan_bytes(env: dict[str, str], rows: int, log_dir: Path, first: int) -> None:
    names = accounts(rows, first)
    path = log_dir / "plan.csv"
    with path.open("w") as fh:
        fh.write("account,send,email\n")
        for i, name in enumerate(names):  # half would change, half hold it already
            email = f"{name}@new.example.com" if i % 2 else "owner@example.com"
            fh.write(f"{name},{'true' if i % 2 else 'false'},{email}\n")
    worker = start_procfile_worker(env, log_dir, "worker-plan")
    try:
        done = subprocess.run(
            [str(BIN / "voicemail"), "bulk", "plan", str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        worker.stop()
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    client = redis.Redis.from_url(env["REDIS_URL"])
    keys = BulkKeys(summary["plan_id"])
    total = sum(int(client.memory_usage(k, samples=0) or 0) for k in keys.all())
    print(
        f"plan of {rows:,} rows ({summary['change']:,} to change): {total:,} bytes kept, "
        f"{total / rows:.0f} bytes per row"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--plan-rows", type=int, default=0)
    args = parser.parse_args()
    n, rounds = args.accounts, args.rounds
    total = 2 * n * rounds + args.plan_rows
    with stack.temp_dir("voicemail-journal-bench-") as log_dir:
        env, redis_service, sim = start_stack(log_dir, total, args.latency_ms)
        try:
            import_accounts(env, accounts(total), log_dir)
            if rounds:
                rates(env, n, rounds, log_dir, redis_service.process.pid)
            client = redis.Redis.from_url(redis_service.url)
            journal_bytes(client, n * rounds)
            if args.plan_rows:
                plan_bytes(env, args.plan_rows, log_dir, 2 * n * rounds + 1)
        finally:
            sim.stop()
            redis_service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
