"""Enqueue-to-SUCCESS over the HTTP API against the Python producer API, in one run.

    .venv/bin/python benchmarks/http_api.py [--jobs 300]

Starts its own Redis, the simulator at 0 ms latency, the worker exactly as the
Procfile's `worker:` line and the HTTP API exactly as its `web:` line, then times,
alternating so that noise hits all alike:
  - Python: `enqueue_get` then `wait` (and `enqueue_update` then `wait`);
  - HTTP, long poll: POST /v1/accounts/bench/reads (or /updates), then
    GET /v1/jobs/{id}?wait=30, over one kept-alive connection (httpx);
  - HTTP, plain poll: the same POST, then GET /v1/jobs/{id} every 5 ms until it is done.
Prints each p50 and p95, and the HTTP p50 / Python p50 ratio (target <= 2).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bulk_rate import BIN, start_procfile_worker, start_stack  # noqa: E402
from benchmarks.roundtrip import p50, p95, timed  # noqa: E402
from simulator import stack  # noqa: E402

POLL_EVERY = 0.005


def procfile_web(port: int, log: Path) -> stack.Service:
    """The API as the Procfile's `web:` line starts it, with this venv first on PATH."""
    line = next(
        (ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:")),
        None,
    )
    if line is None:
        raise SystemExit("Procfile has no web: line")
    env = {**os.environ, "PORT": str(port), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            ["sh", "-c", "exec " + line.removeprefix("web:").strip()],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    service = stack.Service("web", proc, url=url, log_path=log)

    def answers() -> bool:
        try:
            return httpx.get(url + "/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    stack.wait_until(answers, 60, "the Procfile web process")
    return service


def http_steps(http: httpx.Client) -> dict[str, Callable[[], None]]:
    update = {"send": True, "email": "bench@acme.ru"}

    def long_poll(path: str, body: dict[str, object] | None) -> None:
        job_id = http.post(path, json=body).raise_for_status().json()["id"]
        status = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        assert status["state"] == "SUCCESS", status

    def plain_poll() -> None:
        job_id = http.post("/v1/accounts/bench/reads").raise_for_status().json()["id"]
        while (status := http.get(f"/v1/jobs/{job_id}").json())["state"] != "SUCCESS":
            assert status["state"] not in ("FAILURE", "UNKNOWN"), status
            time.sleep(POLL_EVERY)

    return {
        "http_get": lambda: long_poll("/v1/accounts/bench/reads", None),
        "http_update": lambda: long_poll("/v1/accounts/bench/updates", update),
        "http_poll": plain_poll,
    }


def measure(base_url: str, key: str, jobs: int) -> dict[str, list[float]]:
    from tasks import enqueue_get, enqueue_update, wait

    def py_get() -> None:
        assert wait(enqueue_get("bench"), timeout=30).ok

    def py_update() -> None:
        assert wait(enqueue_update("bench", True, "bench@acme.ru"), timeout=30).ok

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        steps = {"py_get": py_get, "py_update": py_update, **http_steps(http)}
        for _ in range(20):  # warm up connections, imports and thread pools on every side
            for step in steps.values():
                step()
        samples: dict[str, list[float]] = {label: [] for label in steps}
        for _ in range(jobs):
            for label, step in steps.items():
                samples[label].append(timed(step))
    return samples


def report(samples: dict[str, list[float]], jobs: int) -> None:
    names = {
        "py_get": "Python: enqueue_get -> wait",
        "http_get": "HTTP: POST reads -> GET ?wait=30",
        "http_poll": f"HTTP: POST reads -> GET every {POLL_EVERY * 1000:.0f} ms",
        "py_update": "Python: enqueue_update -> wait",
        "http_update": "HTTP: POST updates -> GET ?wait=30",
    }
    print(f"enqueue to SUCCESS, simulator at 0 ms; {jobs} of each, alternating")
    for label, name in names.items():
        print(f"{name:<42} p50 {p50(samples[label]):6.2f} ms   p95 {p95(samples[label]):6.2f} ms")
    print()
    for http, py in (("http_get", "py_get"), ("http_update", "py_update"), ("http_poll", "py_get")):
        ratio = p50(samples[http]) / p50(samples[py])
        print(f"p50 {http} / {py}: {ratio:5.2f}   (target <= 2)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()

    with stack.temp_dir("voicemail-http-") as log_dir:
        env, redis_service, sim_service = start_stack(log_dir, generate=0)
        os.environ.update(env)
        worker = start_procfile_worker(dict(os.environ), log_dir, "worker")
        web = procfile_web(stack.free_port(), log_dir / "web.log")
        try:
            from httpapi import keystore
            from tasks.producer import credential_store
            from worker.core.connections import redis_client

            sim = stack.SimulatorControl(sim_service.url)
            sim.add_accounts([{"account": "bench", "token": "tok-bench"}])
            sim.close()
            credential_store().put("bench", "tok-bench")
            client = redis_client(redis_service.url)
            key = keystore.add(client, "bench", "bench")
            client.close()
            samples = measure(web.url, key, args.jobs)
        finally:
            web.stop()
            worker.stop()
            sim_service.stop()
            redis_service.stop()
    report(samples, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
