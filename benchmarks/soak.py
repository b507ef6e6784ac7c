"""Soak: bulks and single jobs run continuously while workers are SIGKILLed at random and
the API misbehaves; then every account is checked.

    .venv/bin/python benchmarks/soak.py [--seconds 180] [--accounts 2000] [--workers 2]

Loopback only, bounded in time, stops by itself. Prints jobs run, faults injected
(API faults and kills), jobs lost (must be 0) and duplicate PATCHes, also as a share of
the jobs run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import stack  # noqa: E402

FAULTS = {
    "error_rate": 0.05,
    "html_502_rate": 0.02,
    "reset_rate": 0.01,
    "rate_limit_rate": 0.01,
    "retry_after": "1",
    "slow_rate": 0.005,
    "slow_seconds": 3,
}


class Workers:
    def __init__(self, count: int, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills = 0
        self.lock = threading.Lock()
        for i in range(count):
            self.start(f"soak{i}")

    def start(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            stack.procfile_worker_argv(name),
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def kill_one(self) -> None:
        with self.lock:
            name = random.choice(list(self.procs))
            proc = self.procs[name]
            os.killpg(proc.pid, 9)
            proc.wait()
            self.kills += 1
        time.sleep(random.uniform(0.5, 3))
        with self.lock:
            self.start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, 15)
                proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)


def bulk_done(bulk_id: str) -> bool:
    from tasks.bulk import bulk_status

    return bulk_status(bulk_id).done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--singles", type=int, default=50, help="single update jobs per round")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    random.seed(args.seed)

    with stack.temp_dir("voicemail-soak-") as log_dir:
        redis_service = stack.start_redis(log_dir, appendonly=True)
        sim_service = stack.start_simulator(log_dir, generate=args.accounts)
        env = {
            **os.environ,
            "REDIS_URL": redis_service.url,
            "PLUSOFON_API_URL": sim_service.url,
            "VOICEMAIL_SECRET_KEY": secrets.token_urlsafe(32),
            "VOICEMAIL_VISIBILITY_TIMEOUT": "10",
            "VOICEMAIL_READ_TIMEOUT": "2",
            "VOICEMAIL_RETRY_BASE_DELAY": "0.05",
            "VOICEMAIL_REQUEUE_BASE_DELAY": "1",
            "VOICEMAIL_REQUEUE_MAX_DELAY": "5",
            "VOICEMAIL_REQUEUE_MAX": "20",
            "VOICEMAIL_BULK_CHUNK_SIZE": "250",
        }
        os.environ.update(env)
        names = [f"acct-{i:06d}" for i in range(1, args.accounts + 1)]
        sim = stack.SimulatorControl(sim_service.url)
        from tasks import enqueue_update, wait
        from tasks.bulk import bulk_status, submit_bulk
        from tasks.producer import credential_store
        from worker.store.credentials import AccountRow

        credential_store().put_many(AccountRow(n, f"tok-{n}") for n in names)
        workers = Workers(args.workers, env, log_dir)
        stop = threading.Event()

        def killer() -> None:
            while not stop.wait(random.uniform(8, 20)):
                workers.kill_one()

        sim.faults(**FAULTS)
        threading.Thread(target=killer, daemon=True).start()
        deadline = time.monotonic() + args.seconds
        target: dict[str, str] = {}
        rounds = rows = singles = failed = applied = 0
        bulks: list[str] = []
        try:
            while time.monotonic() < deadline:
                rounds += 1
                email = f"round{rounds}@soak.example.com"
                bulk_rows = [{"account": n, "send": rounds % 2 == 0, "email": email} for n in names]
                bulks.append(submit_bulk(bulk_rows))
                rows += len(names)
                target.update({n: email for n in names})
                # Single jobs on top, to accounts the bulk just touched: the later one must win.
                picked = random.sample(names, min(args.singles, len(names)))
                jobs = [
                    enqueue_update(n, True, f"single{rounds}-{n}@soak.example.com") for n in picked
                ]
                singles += len(jobs)
                target.update({n: f"single{rounds}-{n}@soak.example.com" for n in picked})
                for job in jobs:
                    status = wait(job, timeout=600)
                    if status.ok and status.result and not status.result.get("superseded"):
                        applied += 1
                stack.wait_until(partial(bulk_done, bulks[-1]), 900, "a soak bulk")
                final = bulk_status(bulks[-1])
                failed += final.failed
                applied += final.succeeded  # rows superseded by a single job count as unchanged
                print(
                    f"round {rounds}: {len(names)} rows + {len(jobs)} singles done, "
                    f"{workers.kills} kills so far",
                    flush=True,
                )
        finally:
            stop.set()
            sim.faults(error_rate=0, html_502_rate=0, reset_rate=0, rate_limit_rate=0, slow_rate=0)

        stats = sim.stats()
        wrong = [n for n in names if sim.account(n)["email"] != target[n]]
        pending = sum(bulk_status(b).pending for b in bulks)
        patches = sum(stats["patches"].values())
        workers.stop()
        sim.close()
        sim_service.stop()
        redis_service.stop()

    jobs_run = rows + singles
    api_faults = sum(stats["faults_injected"].values())
    lost = len(wrong) + pending
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "rounds": rounds,
                "jobs_run": jobs_run,
                "bulk_rows": rows,
                "single_jobs": singles,
                "worker_kills": workers.kills,
                "api_faults_injected": api_faults,
                "rows_failed_and_listed": failed,
                "jobs_lost": lost,
                "patches_expected": applied,
                "patches_seen": patches,
                "duplicate_patches": patches - applied,
                "duplicate_share_of_jobs": round((patches - applied) / max(jobs_run, 1), 5),
            }
        )
    )
    print(
        f"jobs run {jobs_run}, faults injected {api_faults} API + {workers.kills} SIGKILLs, "
        f"jobs lost {lost}, duplicate PATCHes {patches - applied} "
        f"({(patches - applied) / max(jobs_run, 1):.2%} of the jobs)"
    )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
