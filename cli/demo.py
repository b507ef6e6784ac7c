"""`voicemail demo`: the whole pipeline on this machine, then a table of what happened.

Starts its own Redis (never touches one you run) and the simulator on free
ports, imports demo accounts, starts a real worker process, sends single jobs
and a small batch through the queue, prints the outcome and stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simulator import stack

DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {"account": "alice", "token": "demo-token-alice", "email": "alice@example.com", "send": True},
    {"account": "bob", "token": "demo-token-bob", "email": "bob@example.com", "send": False},
    {"account": "carol", "token": "demo-token-carol", "email": "carol@example.com", "send": True},
    {"account": "ghost", "token": "demo-token-ghost", "mode": "missing-200"},
    {"account": "revoked", "token": "demo-token-revoked"},  # imported, unknown to the API: 401
]
BATCH = 20
BULK = 500


def _demo_env(redis_url: str, api_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PLUSOFON_API_URL": api_url,
        "VOICEMAIL_SECRET_KEY": secrets.token_urlsafe(32),
        "VOICEMAIL_RETRY_BASE_DELAY": "0.05",
        "VOICEMAIL_REQUEUE_BASE_DELAY": "0.5",
    }


def _run_jobs(console: Console, sim: stack.SimulatorControl) -> list[dict[str, Any]]:
    # Imported only now: the Celery app reads the environment the demo just set.
    from tasks import enqueue_get, enqueue_update, wait
    from tasks.producer import credential_store
    from worker.store.credentials import AccountRow

    store = credential_store()
    store.put_many(AccountRow(a["account"], a["token"]) for a in DEMO_ACCOUNTS)
    batch = [
        {"account": f"batch-{i:02d}", "token": f"demo-token-batch-{i:02d}"} for i in range(BATCH)
    ]
    store.put_many(AccountRow(a["account"], a["token"]) for a in batch)
    sim.add_accounts(batch)
    # carol's API answers two gateway errors first: the worker retries through them.
    sim.script("carol", ["502", "502"])

    plan: list[tuple[str, str, Any]] = [
        ("get alice", "alice", lambda: enqueue_get("alice")),
        ("update bob", "bob", lambda: enqueue_update("bob", True, "voicemail@bob.example.com")),
        (
            "update carol (two 502s first)",
            "carol",
            lambda: enqueue_update("carol", False, "carol@new.example.com"),
        ),
        ("get ghost (User not found)", "ghost", lambda: enqueue_get("ghost")),
        ("get revoked (401)", "revoked", lambda: enqueue_get("revoked")),
    ]
    rows = []
    for label, account, enqueue in plan:
        started = time.perf_counter()
        status = wait(enqueue(), timeout=30)
        rows.append(_row(label, account, status, time.perf_counter() - started, sim))

    started = time.perf_counter()
    ids = [enqueue_update(a["account"], True, f"{a['account']}@batch.example.com") for a in batch]
    statuses = [wait(i, timeout=60) for i in ids]
    elapsed = time.perf_counter() - started
    ok = sum(s.ok for s in statuses)
    rows.append(
        {
            "job": f"batch of {BATCH} updates",
            "account": "batch-00..19",
            "state": "SUCCESS" if ok == BATCH else f"{ok}/{BATCH} SUCCESS",
            "outcome": f"{ok} applied, {BATCH - ok} failed",
            "requests": str(BATCH),
            "ms": f"{elapsed * 1000:.0f}",
        }
    )
    rows.append(_bulk_row(sim))
    return rows


def _bulk_row(sim: stack.SimulatorControl) -> dict[str, Any]:
    from tasks.bulk import bulk_status, submit_bulk
    from tasks.producer import credential_store
    from worker.store.credentials import AccountRow

    names = [f"bulk-{i:04d}" for i in range(BULK)]
    sim.add_accounts([{"account": n, "token": f"demo-token-{n}"} for n in names])
    credential_store().put_many(AccountRow(n, f"demo-token-{n}") for n in names)
    rows = [{"account": n, "send": True, "email": f"{n}@bulk.example.com"} for n in names]
    rows.append({"account": "nobody", "send": True, "email": "x@example.com"})  # a bad row
    started = time.perf_counter()
    bulk_id = submit_bulk(rows)
    stack.wait_until(lambda: bulk_status(bulk_id).done, 60, "the demo bulk")
    status = bulk_status(bulk_id)
    patched = sum(1 for n in names if sim.account(n)["patches"] == 1)
    return {
        "job": f"bulk: {BULK} accounts + 1 bad row",
        "account": "bulk-0000..",
        "state": "SUCCESS" if status.succeeded == BULK and status.failed == 1 else status.state,
        "outcome": f"{status.succeeded} applied, {status.failed} failed (not in the store)",
        "requests": str(patched),
        "ms": f"{(time.perf_counter() - started) * 1000:.0f}",
    }


def _row(label: str, account: str, status: Any, elapsed: float, sim: Any) -> dict[str, Any]:
    if status.ok:
        outcome = f"email={status.result['email']} send={status.result['send']}"
    elif status.error:
        outcome = f"{status.error.type}: {status.error.message}"
    else:
        outcome = "(no result)"
    return {
        "job": label,
        "account": account,
        "state": status.state,
        "outcome": outcome,
        "requests": str(sim.requests(account)),
        "ms": f"{elapsed * 1000:.0f}",
    }


def run_demo(keep_logs: bool = False) -> int:
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # piped output: room for the table
    log_dir = Path(tempfile.mkdtemp(prefix="voicemail-demo-"))
    services: list[stack.Service] = []
    started = time.perf_counter()
    try:
        with console.status("starting Redis, the simulator and a worker..."):
            redis_service = stack.start_redis(log_dir)
            services.append(redis_service)
            sim_service = stack.start_simulator(log_dir)
            services.append(sim_service)
            env = _demo_env(redis_service.url, sim_service.url)
            os.environ.update(env)
            services.append(stack.start_worker(log_dir, {**os.environ, **env}, name="demo"))
        console.print(
            f"Redis {redis_service.url}, simulator {sim_service.url}, worker demo@"
            f" ({len(services)} processes, {time.perf_counter() - started:.1f}s to start)"
        )
        sim = stack.SimulatorControl(sim_service.url)
        sim.add_accounts([a for a in DEMO_ACCOUNTS if a["account"] != "revoked"])
        rows = _run_jobs(console, sim)
        sim.close()
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {type(exc).__name__}: {exc}")
        console.print(f"logs kept in {log_dir}")
        keep_logs = True
        return 1
    finally:
        for service in reversed(services):
            service.stop()
        if not keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)

    table = Table(title="voicemail-worker demo: jobs through Redis, a worker and the simulator")
    for column in ("job", "account", "state", "outcome", "requests", "ms"):
        table.add_column(column, justify="right" if column in ("requests", "ms") else "left")
    for row in rows:
        style = "green" if row["state"] == "SUCCESS" else "red"
        table.add_row(
            *(row[c] for c in ("job", "account")),
            f"[{style}]{row['state']}[/{style}]",
            row["outcome"],
            row["requests"],
            row["ms"],
        )
    console.print(table)
    expected = ["SUCCESS", "SUCCESS", "SUCCESS", "FAILURE", "FAILURE", "SUCCESS", "SUCCESS"]
    good = [r["state"] for r in rows] == expected
    console.print(
        f"{'all jobs behaved as expected' if good else 'UNEXPECTED outcome'}; "
        f"everything stopped after {time.perf_counter() - started:.1f}s"
        + (f"; logs in {log_dir}" if keep_logs else "")
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(run_demo())
