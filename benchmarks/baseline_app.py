"""The hand-written baseline for benchmarks/bulk_rate.py: one Celery task per account,
a blocking httpx request with tenacity retries, on a prefork pool. Not used by
the product; it is what a user would write without the bulk engine.
"""

from __future__ import annotations

import os

import httpx
import tenacity
from celery import Celery

app = Celery(
    "baseline", broker=os.environ["BASELINE_REDIS_URL"], backend=os.environ["BASELINE_REDIS_URL"]
)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    task_default_queue="baseline",
)

_client: httpx.Client | None = None


def client() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(base_url=os.environ["PLUSOFON_API_URL"], timeout=10)
    return _client


@app.task(name="baseline.update")
@tenacity.retry(
    stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential(max=2), reraise=True
)
def update(token: str, send: bool, email: str) -> bool:
    response = client().patch(
        "/api/v1/voicemail",
        json={"send": send, "email": email},
        headers={
            "Authorization": f"Bearer {token}",
            "Client": "10553",
            "Accept": "application/json",
        },
    )
    response.raise_for_status()
    return True


@app.task(name="baseline.noop")
def noop() -> str:
    """A bare Celery no-op, for benchmarks/roundtrip.py: the queue with nothing of ours."""
    return "pong"
