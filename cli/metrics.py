"""`voicemail metrics --port N`: Prometheus metrics Flower does not have.

Read from Redis at every scrape, so one exporter covers every worker on every
host: queue depths, messages held by workers, jobs pending, dead letters, bulk
progress, API requests, errors by class, latency, rate-limit waits and the
circuit breaker. Flower's own `/metrics` covers task events per worker.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.coordination import breaker
from worker.coordination.bulk_status import STATES, recent_bulks
from worker.coordination.stats import BUCKETS, STATS_KEY
from worker.core.connections import redis_client
from worker.core.connections import text as _text
from worker.core.settings import get_settings
from worker.queue import deadletter, recovery

QUEUES = ("celery", "voicemail.bulk")
logger = logging.getLogger(__name__)
ACTIVE_BULKS = 50


class VoicemailCollector(Collector):
    def __init__(self, client: Any, broker: Any) -> None:
        self._redis = client
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "voicemail_queue_depth", "Messages waiting in a queue", labels=["queue"]
        )
        for queue in QUEUES:
            depth.add_metric([queue], self._broker.llen(queue))
        yield depth
        yield GaugeMetricFamily(
            "voicemail_unacked_messages",
            "Messages delivered to workers and not yet acknowledged",
            value=self._broker.hlen("unacked"),
        )
        yield GaugeMetricFamily(
            "voicemail_jobs_pending",
            "Jobs published and not finished",
            value=self._redis.zcard(recovery.PENDING_KEY),
        )
        yield GaugeMetricFamily(
            "voicemail_dead_letters",
            "Jobs that failed for good",
            value=self._redis.hlen(deadletter.DEAD_KEY),
        )
        open_until = float(self._redis.get(breaker.OPEN_KEY) or 0)
        seconds, micros = self._redis.time()  # the breaker's own clock, not this host's
        yield GaugeMetricFamily(
            "voicemail_circuit_breaker_open",
            "1 while the shared circuit breaker pauses API calls",
            value=1.0 if open_until > seconds + micros / 1e6 else 0.0,
        )
        yield from self._bulks()
        yield from self._requests()

    def _bulks(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "voicemail_bulk_rows", "Rows of recent unfinished bulks", labels=["bulk_id", "outcome"]
        )
        states = GaugeMetricFamily(
            "voicemail_bulks", "Recent bulks by state (PAUSED, CANCELLED, ...)", labels=["state"]
        )
        by_state = dict.fromkeys(STATES[1:], 0)
        for status in recent_bulks(self._redis, ACTIVE_BULKS):
            by_state[status.state] += 1
            if status.done or status.state == "DRY_RUN":
                continue
            for outcome in ("succeeded", "failed", "unchanged", "cancelled", "pending"):
                rows.add_metric([status.bulk_id, outcome], getattr(status, outcome))
        for state, count in by_state.items():
            states.add_metric([state], count)
        yield rows
        yield states

    def _requests(self) -> Iterator[Metric]:
        raw = {_text(k): _text(v) for k, v in self._redis.hgetall(STATS_KEY).items()}
        yield CounterMetricFamily(
            "voicemail_api_requests",
            "Requests sent to the Plusofon API",
            value=int(raw.get("requests", 0)),
        )
        errors = CounterMetricFamily(
            "voicemail_api_errors", "API errors by class", labels=["error"]
        )
        for field, value in raw.items():
            if field.startswith("errors:"):
                errors.add_metric([field.removeprefix("errors:")], int(value))
        yield errors
        cumulative, buckets = 0, []
        for bound in BUCKETS:
            cumulative += int(raw.get(f"latency_le:{bound}", 0))
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", int(raw.get("requests", 0))))
        yield HistogramMetricFamily(
            "voicemail_api_latency_seconds",
            "API request latency",
            buckets=buckets,
            sum_value=float(raw.get("latency_sum", 0)),
        )
        yield CounterMetricFamily(
            "voicemail_corrections",
            "PATCHes that put back an account's newest update after a late landing",
            value=int(raw.get("corrections", 0)),
        )
        yield CounterMetricFamily(
            "voicemail_ratelimit_waits",
            "Requests that waited for the shared rate limit",
            value=int(raw.get("ratelimit_waits", 0)),
        )
        yield CounterMetricFamily(
            "voicemail_ratelimit_wait_seconds",
            "Seconds spent waiting for the shared rate limit",
            value=float(raw.get("ratelimit_wait_seconds", 0)),
        )


def basic_auth(app: Any, users: list[tuple[str, str]]) -> Any:
    """A WSGI app that answers 401 unless the request carries one of `users`."""
    allowed = [f"{user}:{password}".encode() for user, password in users]

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, encoded = header.partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
        except ValueError:
            given = b""
        # Every pair compared, in constant time: no early exit tells a guesser anything.
        if sum(hmac.compare_digest(given, pair) for pair in allowed) == 0:
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="voicemail metrics"'), ("Content-Length", "0")],
            )
            return [b""]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per scrape is noise


def serve(port: int, host: str = "0.0.0.0") -> None:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    settings = get_settings()
    registry = CollectorRegistry()
    registry.register(
        VoicemailCollector(redis_client(settings.redis_url), redis_client(settings.broker_url))
    )
    app = make_wsgi_app(registry)
    users = settings.metrics_users()
    if users:
        app = basic_auth(app, users)
    else:
        logger.warning(
            "VOICEMAIL_METRICS_BASIC_AUTH is not set: /metrics answers anyone who reaches "
            "port %d (queue depths, bulk ids, error counts; never tokens)",
            port,
        )
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    print(f"metrics on http://{host}:{port}/metrics", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
