"""The blocking Plusofon client, for single jobs in the worker's thread pool."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from ..core import constants as C
from ..core.errors import RateLimited, TransientError
from ..core.settings import Settings
from .hooks import Breaker, Limiter, RequestStats
from .models import Credentials, VoicemailSettings, parse_settings, patch_body
from .protocol import (
    ABORT_ON_CLOSE,
    build_headers,
    check_breaker,
    default_headers,
    error_from_response,
    json_object,
    map_transport_errors,
    timeout_of,
)
from .retry import capped_retry_after

logger = logging.getLogger(__name__)


class PlusofonClient:
    """A blocking client: one per worker process, opened at start and closed at shutdown."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
        breaker: Breaker | None = None,
        stats: RequestStats | None = None,
    ):
        self.settings = settings
        self._limiter = limiter
        self._breaker = breaker
        self.stats = stats
        # Each request is built here, whole, and handed to the transport (`_send`).
        self._url = httpx.URL(settings.api_url.rstrip("/") + C.VOICEMAIL_PATH)
        self._headers = default_headers()
        # A request handed to the transport carries its timeouts itself (no Client adds them).
        self._timeouts = {"timeout": timeout_of(settings).as_dict()}
        self._transport = transport or httpx.HTTPTransport(
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=C.DEFAULT_MAX_KEEPALIVE,
            ),
            socket_options=[ABORT_ON_CLOSE],
        )

    def __enter__(self) -> PlusofonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        """`request` through the transport, its body read. Not `httpx.Client.send`: around
        the transport it merges URL, headers and cookies and adds auth, redirects and event
        hooks, none of which we use (no cookie of one account may go with another's), for
        about half of httpx's CPU per request (benchmarks/job_cost.py: 0.62 ms, 0.32 here)."""
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def _request(
        self, method: str, creds: Credentials, payload: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        if self._breaker is not None:
            check_breaker(self._breaker.wait_time())
        if self._limiter is not None:
            waited = self._limiter.acquire(creds.token)
            if self.stats is not None:
                self.stats.waited(waited)
        started = time.perf_counter()
        try:
            with map_transport_errors():
                response = self._send(
                    httpx.Request(
                        method,
                        self._url,
                        headers={**self._headers, **build_headers(self.settings, creds)},
                        json=payload,
                        extensions=self._timeouts,
                    )
                )
        except TransientError as exc:
            self._after(creds, time.perf_counter() - started, exc)
            raise
        error = error_from_response(response.status_code, response.headers, response.content)
        self._after(creds, time.perf_counter() - started, error)
        logger.debug(
            "%s %s account=%s -> %d in %.1fms",
            method,
            C.VOICEMAIL_PATH,
            creds.account,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if error is not None:
            raise error
        return json_object(response.content)

    def _after(self, creds: Credentials, seconds: float, error: BaseException | None) -> None:
        """Bookkeeping once the API answered. It may fail (Redis away) without changing the
        answer: a PATCH that was applied must never turn into a failure here."""
        try:
            if self.stats is not None:
                self.stats.request(seconds, error)
            if self._breaker is not None:
                self._breaker.record(error)
            if isinstance(error, RateLimited) and self._limiter is not None:
                self._limiter.penalize(
                    creds.token, capped_retry_after(self.settings, error.retry_after)
                )
        except Exception:
            logger.warning("could not record the outcome of a request", exc_info=True)

    def get_voicemail(self, creds: Credentials) -> VoicemailSettings:
        return parse_settings(self._request("GET", creds))

    def set_voicemail(self, creds: Credentials, send: bool, email: str) -> VoicemailSettings:
        self._request("PATCH", creds, patch_body(send, email))
        return VoicemailSettings(email=email, send=send)
