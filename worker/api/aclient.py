"""The asyncio Plusofon client for bulk chunks, sending with aiohttp.

The HTTP layer was chosen by measurement (benchmarks/bulk_rate.py, benchmarks/scale.py):
on 2 cores httpx's own async pool fell far behind at 50-100 connections; httpx over
`httpx-aiohttp` spent about 2.5 times aiohttp's CPU per request, and CPU per row is
what bounds a bulk here. So requests go straight to an aiohttp session (`AiohttpSender`);
an `httpx` transport can still be given (`HttpxSender`: tests use httpx.MockTransport).
Either way status, headers and body map to errors through the same
`error_from_response` as the blocking client, so single jobs and bulk rows fail in
exactly the same way.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import httpx

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

# Called right before sending; returns None when sending may go ahead at once, or an
# awaitable to wait on first (a coroutine per request only on the slow path: at
# thousands of rows a second, coroutines that return at once cost a few percent).
Ready = Callable[[], Awaitable[None] | None]


def aborting_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """Every API socket carries `ABORT_ON_CLOSE` (SO_LINGER 0): a request abandoned at its
    timeout is dropped, never retransmitted by TCP when a link comes back. Given to
    aiohttp's public `TCPConnector(socket_factory=...)` (aiohttp 3.12 and later: the
    pyproject floor), so no aiohttp internal is touched."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    try:
        sock.setsockopt(*ABORT_ON_CLOSE)
    except OSError:
        sock.close()
        raise
    return sock


def aborting_connector(limit: int = 100) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, keepalive_timeout=30, socket_factory=aborting_socket)


Answer = tuple[int, Mapping[str, str], bytes]


class Sender(Protocol):
    async def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> Answer: ...

    async def aclose(self) -> None: ...


class AiohttpSender:
    """One aiohttp session per event loop, opened on the first request (inside the loop)."""

    def __init__(self, settings: Settings) -> None:
        self._limit = settings.max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            # `connect` covers the wait for a free pooled connection too.
            connect=C.DEFAULT_POOL_TIMEOUT + settings.connect_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aborting_connector(self._limit),
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> Answer:
        session = self._session or self._open()
        # aiohttp's ServerTimeoutError and connect timeouts are TimeoutErrors.
        with map_transport_errors(TimeoutError, aiohttp.ClientError):
            async with session.request(method, url, headers=headers, data=content) as response:
                return response.status, response.headers, await response.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxSender:
    """httpx with a transport of the caller's choosing (httpx.MockTransport in tests)."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport) -> None:
        self._http = httpx.AsyncClient(transport=transport)
        self._timeout = {"timeout": timeout_of(settings).as_dict()}

    async def send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> Answer:
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions=self._timeout
        )
        with map_transport_errors():
            response = await self._http.send(request)
        return response.status_code, response.headers, response.content

    async def aclose(self) -> None:
        await self._http.aclose()


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
        self._sender: Sender = (
            HttpxSender(settings, transport) if transport is not None else AiohttpSender(settings)
        )
        self._url = settings.api_url + C.VOICEMAIL_PATH
        self._headers = default_headers()

    async def aclose(self) -> None:
        await self._sender.aclose()

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
            if self._breaker.must_refresh():
                await self._breaker.refresh()
            check_breaker(self._breaker.wait_time())
        if self._limiter is not None and self._limiter.enabled:
            waited = await self._limiter.acquire(creds.token)
            if self.stats is not None:
                self.stats.waited(waited)
        if ready is not None and (wait := ready()) is not None:
            await wait
        headers = {**self._headers, **build_headers(self.settings, creds)}
        content = json.dumps(payload).encode() if payload is not None else None
        started = time.perf_counter()
        try:
            status, answer_headers, body = await self._sender.send(
                method, self._url, headers, content
            )
        except TransientError as exc:
            if self._note(time.perf_counter() - started, exc):
                await self._after(creds, exc)
            raise
        error = error_from_response(status, answer_headers, body)
        if self._note(time.perf_counter() - started, error):
            await self._after(creds, error)
        if error is not None:
            raise error
        return json_object(body)

    def _note(self, seconds: float, error: BaseException | None) -> bool:
        """Count the request; True when Redis must hear of it (`_after`)."""
        if self.stats is not None:
            self.stats.request(seconds, error)
        due = self._breaker is not None and self._breaker.record(error)
        return due or (isinstance(error, RateLimited) and self._limiter is not None)

    async def _after(self, creds: Credentials, error: BaseException | None) -> None:
        """Bookkeeping once the API answered; its failure (Redis away) never changes the answer."""
        try:
            if self._breaker is not None and self._breaker.report_due():
                await self._breaker.report()
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
