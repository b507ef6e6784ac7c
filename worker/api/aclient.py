"""The asyncio Plusofon client for bulk chunks: httpx's API over aiohttp's connection pool.

The transport was chosen by measurement (benchmarks/bulk_rate.py): against the simulator
at 20 ms on 2 cores, httpx's own async pool fell far behind at 50-100 concurrent
connections, while httpx over `httpx-aiohttp` came within reach of aiohttp itself.
Status and body map to errors through the same `error_from_response` as the
blocking client, so single jobs and bulk rows fail in exactly the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from ..core import constants as C
from ..core.errors import RateLimited, TransientError
from ..core.settings import Settings
from .hooks import AsyncBreaker, AsyncLimiter, RequestStats
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

Ready = Callable[[], Awaitable[None]]


class AbortingConnector(aiohttp.TCPConnector):
    """aiohttp's connector with `ABORT_ON_CLOSE` on every socket it opens.

    Overrides `_wrap_create_connection`, an internal of aiohttp 3.10 to 3.14 (tested in
    tests/test_compat.py); where it is missing, `aiohttp_transport` falls back to the
    plain connector and says so.
    """

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super()._wrap_create_connection(*args, **kwargs)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(*ABORT_ON_CLOSE)
        return transport, protocol


CAN_ABORT = hasattr(aiohttp.TCPConnector, "_wrap_create_connection")


def aiohttp_transport(settings: Settings) -> AiohttpTransport:
    connector_limit = settings.max_connections
    connector = AbortingConnector if CAN_ABORT else aiohttp.TCPConnector
    if not CAN_ABORT:
        logger.warning("aiohttp %s: connections close gracefully", aiohttp.__version__)

    def session() -> aiohttp.ClientSession:
        # Created inside the running loop, on first request.
        return aiohttp.ClientSession(
            connector=connector(limit=connector_limit, keepalive_timeout=30),
        )

    return AiohttpTransport(client=session)


class AsyncPlusofonClient:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: AsyncLimiter | None = None,
        breaker: AsyncBreaker | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self.settings = settings
        self._limiter = limiter
        self._breaker = breaker
        self.stats = stats
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else aiohttp_transport(settings),
        )
        # Requests are built here rather than by `AsyncClient.request`: merging a base URL,
        # default headers and cookies per request cost a quarter of the engine's CPU.
        self._url = httpx.URL(settings.api_url + C.VOICEMAIL_PATH)
        self._timeout = {"timeout": timeout_of(settings).as_dict()}
        self._headers = default_headers()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        creds: Credentials,
        payload: dict[str, Any] | None = None,
        ready: Ready | None = None,
    ) -> dict[str, Any] | None:
        """`ready`, when given, runs last before sending (after any rate-limit wait), and
        may refuse by raising: the caller's chance to check that sending is still right."""
        if self._breaker is not None:
            check_breaker(await self._breaker.pause())
        if self._limiter is not None:
            waited = await self._limiter.acquire(creds.token)
            if self.stats is not None:
                self.stats.waited(waited)
        if ready is not None:
            await ready()
        request = httpx.Request(
            method,
            self._url,
            headers={**self._headers, **build_headers(self.settings, creds)},
            content=json.dumps(payload).encode() if payload is not None else None,
            extensions=self._timeout,
        )
        started = time.perf_counter()
        try:
            with map_transport_errors():
                response = await self._http.send(request)
        except TransientError as exc:
            await self._after(creds, time.perf_counter() - started, exc)
            raise
        error = error_from_response(response.status_code, response.headers, response.content)
        await self._after(creds, time.perf_counter() - started, error)
        if error is not None:
            raise error
        return json_object(response.content)

    async def _after(self, creds: Credentials, seconds: float, error: BaseException | None) -> None:
        """Bookkeeping once the API answered; its failure (Redis away) never changes the answer."""
        try:
            if self.stats is not None:
                self.stats.request(seconds, error)
            if self._breaker is not None:
                await self._breaker.record(error)
            if isinstance(error, RateLimited) and self._limiter is not None:
                await self._limiter.penalize(
                    creds.token, capped_retry_after(self.settings, error.retry_after)
                )
        except Exception:
            logger.warning("could not record the outcome of a request", exc_info=True)

    async def get_voicemail(
        self, creds: Credentials, ready: Ready | None = None
    ) -> VoicemailSettings:
        return parse_settings(await self._request("GET", creds, ready=ready))

    async def set_voicemail(
        self, creds: Credentials, send: bool, email: str, ready: Ready | None = None
    ) -> VoicemailSettings:
        await self._request("PATCH", creds, patch_body(send, email), ready=ready)
        return VoicemailSettings(email=email, send=send)
