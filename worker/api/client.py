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
        # Each request is built here, whole, and handed to `send`: the client's own merging
        # of base URL, headers and cookies cost about a quarter of a request's CPU (see
        # benchmarks/job_cost.py). And no cookie of one account is sent with another's.
        self._url = httpx.URL(settings.api_url.rstrip("/") + C.VOICEMAIL_PATH)
        self._headers = default_headers()
        # A request built by hand carries its timeouts itself: httpx 0.27's `send` does not
        # add the client's to a request that has none (no read timeout at all, then).
        self._timeouts = {"timeout": timeout_of(settings).as_dict()}
        self._http = httpx.Client(
            timeout=timeout_of(settings),
            transport=transport
            or httpx.HTTPTransport(
                limits=httpx.Limits(
                    max_connections=settings.max_connections,
                    max_keepalive_connections=C.DEFAULT_MAX_KEEPALIVE,
                ),
                socket_options=[ABORT_ON_CLOSE],
            ),
        )

    def __enter__(self) -> PlusofonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

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
                response = self._http.send(
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
