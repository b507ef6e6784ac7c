"""What waves and an automatic stop cost a bulk, against the simulator at 20 ms latency.

    .venv/bin/python benchmarks/rollout.py               # 10,000 accounts

Starts Redis, the simulator and the worker as the Procfile's `worker:` line (as
benchmarks/bulk_rate.py does), then submits the same file with `voicemail bulk submit
FILE --wait` plainly, in waves `1%,10%,100%`, and with `--max-failures 5%` at the
default `--min-sample` (20) and at 100, each `--repeat` times in turn. Prints each
bulk's best rate (rows over the time from its creation to its last row: the run least
disturbed by whatever else the machine runs) and its ratio to the plain bulk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bulk_rate import (  # noqa: E402
    BIN,
    accounts,
    import_accounts,
    start_procfile_worker,
    start_stack,
)

RUNS = {
    "plain": [],
    "--waves 1%,10%,100%": ["--waves", "1%,10%,100%"],
    "--max-failures 5% (min sample 20)": ["--max-failures", "5%"],
    "--max-failures 5% --min-sample 100": ["--max-failures", "5%", "--min-sample", "100"],
}


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run(env: dict[str, str], path: Path, options: list[str]) -> float:
    """The bulk's rows per second, from its creation to its last row."""
    done = subprocess.run(
        [str(BIN / "voicemail"), "bulk", "submit", str(path), "--wait", *options],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if summary.get("state") != "DONE" or summary.get("failed"):
        raise SystemExit(f"bulk did not finish cleanly: {done.stdout} {done.stderr}")
    status = subprocess.run(
        [str(BIN / "voicemail"), "bulk", "status", str(summary["bulk_id"])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    times = json.loads(status.stdout)
    elapsed = _seconds(times["finished_at"]) - _seconds(times["created_at"])
    return float(summary["total"]) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    names = accounts(args.accounts)
    with tempfile.TemporaryDirectory(prefix="rollout-") as tmp:
        log_dir = Path(tmp)
        env, redis_service, sim = start_stack(log_dir, args.accounts, args.latency_ms)
        import_accounts(env, names, log_dir)
        worker = start_procfile_worker(env, log_dir, "worker")
        try:
            path = log_dir / "rows.csv"
            path.write_text("account,send,email\n" + "".join(f"{n},true,{n}@x.ru\n" for n in names))
            rates = dict.fromkeys(RUNS, 0.0)
            for _ in range(args.repeat):
                for label, options in RUNS.items():
                    rates[label] = max(rates[label], run(env, path, options))
        finally:
            worker.stop()
            sim.stop()
            redis_service.stop()
    plain = rates["plain"]
    print(f"{args.accounts} accounts at {args.latency_ms:.0f} ms")
    for label, rate in rates.items():
        print(f"{label:40} {rate:8,.0f} accounts/s  {rate / plain:5.2f}")


if __name__ == "__main__":
    main()
