"""`voicemail metrics` scraped over HTTP after real jobs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator import stack
from tasks import enqueue_get, enqueue_update, wait

from .conftest import VOICEMAIL, SimAccount

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[str]:
    port = stack.free_port()
    proc = subprocess.Popen(
        [VOICEMAIL, "metrics", "--port", str(port), "--host", "127.0.0.1"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        stack.wait_until(lambda: httpx.get(url).status_code == 200, 30, "the exporter")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def scrape(url: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url).text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_after_jobs(
    exporter: str, make_account: Callable[..., SimAccount], sim: stack.SimulatorControl
) -> None:
    before = scrape(exporter)
    ok, missing = make_account(), make_account("missing-200")
    assert wait(enqueue_update(ok.name, True, "m@acme.ru"), timeout=20).ok
    assert not wait(enqueue_get(missing.name), timeout=20).ok

    errors = "voicemail_api_errors_total{error=UserNotFound}"
    requests = "voicemail_api_requests_total{}"

    def counted() -> bool:
        now = scrape(exporter)
        return (
            now.get(requests, 0) >= before.get(requests, 0) + 2
            and now.get(errors, 0) >= before.get(errors, 0) + 1
        )

    stack.wait_until(counted, 20, "the requests to show up")
    after = scrape(exporter)
    assert after[errors] >= 1
    assert after["voicemail_api_latency_seconds_count{}"] >= 2
    assert "voicemail_queue_depth{queue=celery}" in after
    assert "voicemail_queue_depth{queue=voicemail.bulk}" in after
    assert after["voicemail_circuit_breaker_open{}"] in (0.0, 1.0)
    assert "voicemail_dead_letters{}" in after
    assert "voicemail_ratelimit_waits_total{}" in after


def test_metrics_count_bulks_by_state(
    exporter: str, make_account: Callable[..., SimAccount]
) -> None:
    from tasks.bulk import bulk_status, cancel_bulk, list_bulks, pause_bulk, submit_bulk

    account = make_account()

    def paused_rows() -> Iterator[dict[str, object]]:
        pause_bulk(list_bulks(1)[0].bulk_id)  # this bulk, paused before its first row
        yield {"account": account.name, "send": True, "email": "m@acme.ru"}

    def bulks(state: str) -> float:
        return scrape(exporter).get(f"voicemail_bulks{{state={state}}}", 0)

    bulk_id = submit_bulk(paused_rows())
    assert bulk_status(bulk_id).state == "PAUSED"
    assert bulks("PAUSED") >= 1
    cancel_bulk(bulk_id)
    stack.wait_until(lambda: bulk_status(bulk_id).done, 20, "the cancelled bulk settling")
    assert bulk_status(bulk_id).cancelled == 1
    assert bulks("CANCELLED") >= 1 and bulks("PAUSED") == 0


class Exporter:
    """`voicemail metrics` under `env`, on a free port; `stderr` is read when it stops."""

    def __init__(self, env: dict[str, str]) -> None:
        port = stack.free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stderr = ""
        self._proc = subprocess.Popen(
            [VOICEMAIL, "metrics", "--port", str(port), "--host", "127.0.0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Exporter:
        stack.wait_until(lambda: _answers(self.url), 30, "the exporter")
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        _, self.stderr = self._proc.communicate(timeout=10)


def test_exporter_asks_for_credentials_when_configured(tmp_path: Path) -> None:
    env = {**os.environ, "VOICEMAIL_METRICS_BASIC_AUTH": "prom:s3cret, ops:other-pass"}
    exporter = Exporter(env)
    with exporter:
        url = exporter.url
        assert httpx.get(url).status_code == 401
        assert httpx.get(url).headers["WWW-Authenticate"].startswith("Basic")
        assert httpx.get(url, auth=("prom", "wrong")).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Basic !!"}).status_code == 401
        ok = httpx.get(url, auth=("prom", "s3cret"))
        assert ok.status_code == 200 and "voicemail_queue_depth" in ok.text
        assert httpx.get(url, auth=("ops", "other-pass")).status_code == 200
    assert "VOICEMAIL_METRICS_BASIC_AUTH is not set" not in exporter.stderr


def test_exporter_without_credentials_is_open_and_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOICEMAIL_METRICS_BASIC_AUTH"}
    exporter = Exporter(env)
    with exporter:
        assert httpx.get(exporter.url).status_code == 200
    assert exporter.stderr.count("VOICEMAIL_METRICS_BASIC_AUTH is not set") == 1


def test_a_bad_metrics_auth_setting_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "VOICEMAIL_METRICS_BASIC_AUTH": "just-a-user"}
    done = subprocess.run(
        [VOICEMAIL, "metrics", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "VOICEMAIL_METRICS_BASIC_AUTH" in done.stderr
    assert "just-a-user" not in done.stderr  # a credential is never echoed


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code in (200, 401)
    except httpx.HTTPError:
        return False
