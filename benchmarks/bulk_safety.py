"""Bulk safety at speed, in one run: how fast a cancel and a pause take hold on every
worker, and the rate of a revert against the revertible bulk it undoes.

    .venv/bin/python benchmarks/bulk_safety.py            # 10,000 accounts, 20 ms API latency

Starts Redis, the simulator and two workers exactly as the Procfile's `worker:` line
(defaults, nothing tuned), then, with the CLI as a user would:
  (a) `voicemail bulk submit FILE --wait` (PATCH only), for reference;
  (b) `voicemail bulk submit FILE --revertible --wait`: GET, keep what each held, PATCH;
  (c) `voicemail bulk revert ID --wait` of (b): GET, check, PATCH back;
  (d) a bulk cancelled, and (e) one paused, mid-run: the time from the command's return
      to the last request the API sees (requests already in flight included).
Rates run from the bulk's creation to its last row. Prints accounts/s, the revert /
revertible ratio (target: about 1, since both read and then write) and the cancel and
pause figures (target: under 1 s).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bulk_rate import (  # noqa: E402
    _seconds,
    accounts,
    import_accounts,
    procfile_worker,
    start_procfile_worker,
    start_stack,
)
from simulator import stack  # noqa: E402

BIN = Path(sys.executable).parent


def voicemail(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(BIN / "voicemail"), *args], env=env, capture_output=True, text=True, timeout=3600
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"voicemail {' '.join(args)} failed: {done.stderr}")
    return dict(json.loads(lines[-1]))


def timed(env: dict[str, str], *args: str) -> tuple[dict[str, Any], float]:
    """Run a bulk command with --wait; returns its summary and its seconds, created to DONE."""
    summary = voicemail(env, *args, "--wait")
    if summary.get("state") != "DONE" or summary.get("failed"):
        raise SystemExit(f"{' '.join(args)} did not finish cleanly: {summary}")
    status = voicemail(env, "bulk", "status", summary["bulk_id"])
    return summary, _seconds(status["finished_at"]) - _seconds(status["created_at"])


def stop_lag(env: dict[str, str], sim_url: str, path: str, op: str) -> tuple[float, int]:
    """Submit, let it run, then `op` (cancel or pause) it: seconds from the command's return
    to the last request the API saw, and the requests by then."""
    with httpx.Client(base_url=sim_url) as sim:

        def total() -> int:
            return int(sim.get("/_sim/stats").json()["total"])

        start = total()
        bulk_id = voicemail(env, "bulk", "submit", path)["bulk_id"]
        stack.wait_until(lambda: total() > start + 2000, 120, "the bulk running")
        voicemail(env, "bulk", op, bulk_id)
        returned = last_change = time.monotonic()
        seen = total()
        while time.monotonic() - last_change < 3.0:  # quiet for 3 s: nothing more comes
            now = total()
            if now != seen:
                seen, last_change = now, time.monotonic()
            time.sleep(0.01)
        if op == "pause":
            voicemail(env, "bulk", "cancel", bulk_id)
        return last_change - returned, seen - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    n = args.accounts

    with stack.temp_dir("voicemail-safety-") as log_dir:
        env, redis_service, sim = start_stack(log_dir, n, args.latency_ms)
        services = [sim, redis_service]
        try:
            names = accounts(n)
            import_accounts(env, names, log_dir)
            for label in ("worker-1", "worker-2"):
                services.insert(0, start_procfile_worker(env, log_dir, label))
            files = {}
            for label, send in (("plain", "true"), ("revertible", "false"), ("stop", "true")):
                path = log_dir / f"{label}.csv"
                path.write_text(
                    "account,send,email\n"
                    + "".join(f"{a},{send},{a}@{label}.example.com\n" for a in names)
                )
                files[label] = str(path)
            _, plain = timed(env, "bulk", "submit", files["plain"])
            done, revertible = timed(env, "bulk", "submit", files["revertible"], "--revertible")
            reverted, revert = timed(env, "bulk", "revert", done["bulk_id"])
            if reverted["succeeded"] != n:
                raise SystemExit(f"the revert did not restore every account: {reverted}")
            cancel_lag, cancel_rows = stop_lag(env, sim.url, files["stop"], "cancel")
            pause_lag, pause_rows = stop_lag(env, sim.url, files["stop"], "pause")

            argv = procfile_worker()
            print(f"two workers: {' '.join(shlex.quote(a) for a in argv[1:])} (defaults)")
            print(f"API latency {args.latency_ms:.0f} ms, {n:,} accounts; rates: creation to DONE")
            print(f"(a) bulk, PATCH only:              {n / plain:8.0f} accounts/s ({plain:.1f} s)")
            print(
                f"(b) bulk --revertible, GET+PATCH:  {n / revertible:8.0f} accounts/s "
                f"({revertible:.1f} s)"
            )
            print(
                f"(c) bulk revert of (b), GET+PATCH: {n / revert:8.0f} accounts/s ({revert:.1f} s)"
            )
            print(
                f"(d) cancel: last request {cancel_lag * 1000:5.0f} ms after the command returned "
                f"({cancel_rows:,} requests by then)"
            )
            print(
                f"(e) pause:  last request {pause_lag * 1000:5.0f} ms after the command returned "
                f"({pause_rows:,} requests by then)"
            )
            print()
            print(f"revert / revertible: {revertible / revert:5.2f}   (target: about 1)")
            print(f"revertible / plain:  {plain / revertible:5.2f}   (two requests a row, not one)")
            worst = max(cancel_lag, pause_lag)
            print(f"cancel and pause take hold within {worst:.2f} s (target: under 1 s)")
        finally:
            for service in services:
                service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
