"""Where a single job's CPU goes, a `voicemail.get` beside a `voicemail.ping`, in one run.

    .venv/bin/python benchmarks/job_cost.py [--jobs 2000]

Starts its own Redis, the simulator at 0 ms and the worker with the Procfile's `worker:`
arguments (defaults), but through this file, which first wraps a few functions to add up
the CPU time (`time.thread_time`, so waiting for the GIL or a socket costs nothing) their
thread spends inside them. Then sends `--jobs` gets at once, and as many pings, and prints
the worker's CPU per job (all its threads, from the kernel's counters) and what the
wrapped parts took of it. Wrapped parts nest: the API call is part of the task body,
which is part of the whole job. Figures carry the wrappers' own cost (a few microseconds
per call), which falls alike on both columns.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (label, module, attribute path): what the worker wraps.
PARTS = [
    (
        "consumer: take a message (kombu, receipt record, hand-off)",
        "kombu.transport.redis",
        "Channel._brpop_read",
    ),
    (
        "consumer: send task events (Flower)",
        "celery.worker.consumer.consumer",
        "Consumer._flush_events",
    ),
    ("pool: whole job", "celery.concurrency.thread", "apply_target"),
    ("  task body (argument check, work)", "tasks.voicemail", "VoicemailTask.__call__"),
    ("    credential read and decrypt", "worker.store.credentials", "CredentialStore.get"),
    ("    API call (limiter, breaker, stats)", "worker.api.client", "PlusofonClient._request"),
    ("      httpx transport", "httpx", "HTTPTransport.handle_request"),
    ("  results stored (STARTED, SUCCESS)", "worker.queue.backend", "_NoTraceback.store_result"),
    (
        "    of which Celery's read before write",
        "celery.backends.base",
        "BaseKeyValueStoreBackend._get_task_meta_for",
    ),
    ("  acknowledgement", "kombu.transport.redis", "QoS.ack"),
    ("log records (any thread)", "logging", "Logger.handle"),
]


def _instrument(out: str) -> None:
    """Runs in the worker: wrap PARTS, and on SIGUSR2 first zero the sums, then write them."""
    import importlib

    sums: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    lock = threading.Lock()

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with lock:
                    entry = sums[label]
                    entry[0] += spent
                    entry[1] += 1

        return timed

    for label, module, path in PARTS:
        owner: Any = importlib.import_module(module)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        setattr(owner, name, wrap(label, getattr(owner, name)))

    marks = [0]

    def on_signal(*_: Any) -> None:
        marks[0] += 1
        if marks[0] == 1:
            with lock:
                sums.clear()
            Path(out + ".zeroed").touch()
        else:
            with lock:
                Path(out).write_text(json.dumps(dict(sums)))

    signal.signal(signal.SIGUSR2, on_signal)


def _run_worker(argv: list[str]) -> None:
    from celery import signals
    from celery.__main__ import main as celery_main

    import worker  # noqa: F401  # the app, as `celery -A worker` loads it

    out = os.environ["JOB_COST_OUT"]
    signals.worker_init.connect(lambda **_: _instrument(out), weak=False)
    sys.argv = ["celery", *argv]
    celery_main()


def _measure(
    name: str, args: list[Any], n: int, log_dir: Path, env: dict[str, str]
) -> dict[str, Any]:
    import psutil
    from celery import Celery

    from benchmarks.bulk_rate import procfile_worker, start_procfile_worker
    from simulator import stack

    out = log_dir / f"{name}.json"
    argv = [sys.executable, __file__, "--worker", *procfile_worker()[1:]]
    worker = start_procfile_worker({**env, "JOB_COST_OUT": str(out)}, log_dir, name, argv)
    proc = worker.process
    plain = Celery("other-service", broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    plain.conf.update(task_serializer="json", accept_content=["json"], result_extended=True)
    try:
        for _ in range(50):  # warm up
            plain.send_task(name, args=args).get(timeout=30)
        process = psutil.Process(proc.pid)
        proc.send_signal(signal.SIGUSR2)
        zeroed = Path(f"{out}.zeroed")
        stack.wait_until(zeroed.exists, 30, "the worker's sums zeroed")
        before = {t.id: t.user_time + t.system_time for t in process.threads()}
        started = time.perf_counter()
        results = [plain.send_task(name, args=args) for _ in range(n)]
        for result in results:
            result.get(timeout=300)
        elapsed = time.perf_counter() - started
        after = {t.id: t.user_time + t.system_time for t in process.threads()}
        proc.send_signal(signal.SIGUSR2)
        stack.wait_until(out.exists, 30, "the worker's figures")
    finally:
        plain.close()
        worker.stop()
    spent = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
    return {
        "rate": n / elapsed,
        "cpu": sum(spent.values()) / n * 1000,
        "consumer": spent.get(proc.pid, 0.0) / n * 1000,
        "parts": {k: v[0] / n * 1000 for k, v in json.loads(out.read_text()).items()},
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _run_worker(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()

    from benchmarks.bulk_rate import procfile_worker, start_stack
    from simulator import stack

    with stack.temp_dir("voicemail-job-cost-") as log_dir:
        env, redis_service, sim_service = start_stack(log_dir, generate=0)
        env["PYTHONPATH"] = str(ROOT)
        os.environ.update(env)
        try:
            from tasks.producer import credential_store

            sim = stack.SimulatorControl(sim_service.url)
            sim.add_accounts([{"account": "bench", "token": "tok-bench"}])
            sim.close()
            credential_store().put("bench", "tok-bench")
            get = _measure("voicemail.get", ["bench"], args.jobs, log_dir, env)
            ping = _measure("voicemail.ping", [], args.jobs, log_dir, env)
        finally:
            sim_service.stop()
            redis_service.stop()

    print(f"worker: {' '.join(procfile_worker()[1:])} (defaults), simulator at 0 ms")
    print(f"{args.jobs} jobs at once, each kind on a fresh worker; CPU per job in ms\n")
    print(f"{'':58} {'get':>7} {'ping':>7} {'diff':>7}")
    rows = [
        ("jobs/s", get["rate"], ping["rate"]),
        ("worker CPU per job, all threads", get["cpu"], ping["cpu"]),
        ("  consumer thread", get["consumer"], ping["consumer"]),
        ("  pool and other threads", get["cpu"] - get["consumer"], ping["cpu"] - ping["consumer"]),
    ]
    rows += [
        (label, get["parts"].get(label, 0.0), ping["parts"].get(label, 0.0))
        for label, _, _ in PARTS
    ]
    for label, g, p in rows:
        print(f"{label:58} {g:7.2f} {p:7.2f} {g - p:+7.2f}")
    print(
        f"\nthroughput ratio get/ping: {get['rate'] / ping['rate']:.2f}; "
        f"CPU ratio ping/get: {ping['cpu'] / get['cpu']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
