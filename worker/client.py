"""The Plusofon voicemail API over httpx, and the one function that maps answers to errors."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import _constants as C
from .breaker import Breaker
from .errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    AuthError,
    CircuitOpen,
    PlusofonError,
    RateLimited,
    ServerError,
    TransientError,
    UserNotFound,
    ValidationError,
)
from .ratelimit import RateLimiter
from .retry import parse_retry_after
from .settings import Settings
from .stats import Stats

logger = logging.getLogger(__name__)

_MAX_MESSAGE = 200


@dataclass(frozen=True)
class Credentials:
    """What a request needs to act for one account. The token never shows in a repr."""

    account: str
    token: str = field(repr=False)
    client_id: int | None = None


@dataclass(frozen=True)
class VoicemailSettings:
    email: str
    send: bool

    def as_result(self, account: str) -> dict[str, Any]:
        return {"account": account, "email": self.email, "send": self.send}


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _error_shape(body: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """The API's own error body, `{"message": str, "code": int >= 400}`, if this is one."""
    if body is None:
        return None
    message, code = body.get("message"), body.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    if isinstance(message, str) and code >= 400:
        return message, code
    return None


def _field_errors(body: Mapping[str, Any] | None) -> dict[str, list[str]]:
    errors = body.get("errors") if body else None
    if not isinstance(errors, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for key, value in errors.items():
        items = value if isinstance(value, list) else [value]
        out[str(key)] = [_short(str(v)) for v in items]
    return out


def error_from_response(
    status_code: int, headers: Mapping[str, str], content: bytes
) -> PlusofonError | None:
    """Map an HTTP answer to the exception it means, or None when it is a success.

    The API's quirks: "User not found." comes as `{"message", "code": 500}` with
    HTTP 200 or 500; a 2xx body with `success: false` or `code >= 400` is an
    error; a 5xx without that JSON shape (a gateway's HTML page, an empty body)
    is transient. The body's `code`, when present, counts as the status.
    """
    body = json_object(content)
    shape = _error_shape(body)
    status = shape[1] if shape else status_code
    text = body.get("message") if body else None
    message = _short(text) if isinstance(text, str) else ""

    if message.strip().rstrip(".").lower() == "user not found":
        return UserNotFound(message, status_code=status_code)

    if 200 <= status < 300:
        if body is not None and body.get("success") is False:
            reason = message or "success: false"
            return ApiError(f"API refused the request: {reason}", status_code=status_code)
        return None

    if status in (401, 403):
        return AuthError(
            message or f"HTTP {status}: token rejected (unauthenticated)", status_code=status
        )
    if status in (400, 422):
        errors = _field_errors(body)
        text = message or f"HTTP {status}: request rejected"
        if errors:
            details = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())
            text = f"{text} ({_short(details)})"
        return ValidationError(text, status_code=status, errors=errors)
    if status == 429:
        after = parse_retry_after(headers.get("retry-after"))
        if after is None:
            ms = parse_retry_after(headers.get("retry-after-ms"))
            after = ms / 1000 if ms is not None else None
        hint = f", retry after {after:g}s" if after is not None else ""
        return RateLimited(
            message or f"HTTP 429: rate limited{hint}", status_code=429, retry_after=after
        )
    if status == 408:
        return ApiTimeout(message or "HTTP 408: request timeout", status_code=status)
    if status >= 500:
        kind = "JSON error" if shape else ("empty body" if not content.strip() else "non-JSON body")
        detail = f": {message}" if message else f" ({kind})"
        return ServerError(f"HTTP {status} from Plusofon API{detail}", status_code=status)
    if status == 404 and not shape:
        return ApiError("HTTP 404: no such endpoint, check PLUSOFON_API_URL", status_code=404)
    return ApiError(message or f"HTTP {status}: unexpected answer", status_code=status)


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Turn httpx transport failures into our transient errors, raised `from` the original."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ApiTimeout(f"{type(exc).__name__}: timed out talking to Plusofon API") from exc
    except httpx.TransportError as exc:
        reason = _short(str(exc)) or type(exc).__name__
        raise ApiConnectionError(f"{type(exc).__name__}: {reason}") from exc


def check_breaker(pause: float) -> None:
    if pause > 0:
        raise CircuitOpen(
            f"circuit breaker open: most recent API calls failed, pausing {pause:.1f}s",
            status_code=None,
            retry_after=pause,
        )


def patch_body(send: bool, email: str) -> dict[str, Any]:
    return {"send": send, "email": email}


def parse_settings(body: Mapping[str, Any] | None) -> VoicemailSettings:
    email, send = (body or {}).get("email"), (body or {}).get("send")
    if not isinstance(email, str) or not isinstance(send, bool):
        raise ApiError('unexpected GET answer: expected {"email": str, "send": bool}')
    return VoicemailSettings(email=email, send=send)


def build_headers(settings: Settings, creds: Credentials) -> dict[str, str]:
    client_id = creds.client_id if creds.client_id is not None else settings.client_id
    return {"Client": str(client_id), "Authorization": f"Bearer {creds.token}"}


def default_headers() -> dict[str, str]:
    return {"Accept": "application/json", "Content-Type": "application/json"}


def timeout_of(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.read_timeout,
        connect=settings.connect_timeout,
        pool=C.DEFAULT_POOL_TIMEOUT,
    )


class PlusofonClient:
    """A blocking client: one per worker process, opened at start and closed at shutdown."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        limiter: RateLimiter | None = None,
        breaker: Breaker | None = None,
        stats: Stats | None = None,
    ):
        self.settings = settings
        self._limiter = limiter
        self._breaker = breaker
        self.stats = stats
        self._http = httpx.Client(
            base_url=settings.api_url,
            headers=default_headers(),
            timeout=timeout_of(settings),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=C.DEFAULT_MAX_KEEPALIVE,
            ),
            transport=transport,
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
            check_breaker(self._breaker.pause())
        if self._limiter is not None:
            waited = self._limiter.acquire(creds.token)
            if self.stats is not None:
                self.stats.waited(waited)
        started = time.perf_counter()
        try:
            with map_transport_errors():
                response = self._http.request(
                    method,
                    C.VOICEMAIL_PATH,
                    headers=build_headers(self.settings, creds),
                    json=payload,
                )
        except TransientError as exc:
            if self._breaker is not None:
                self._breaker.record(exc)
            if self.stats is not None:
                self.stats.request(time.perf_counter() - started, exc)
            raise
        error = error_from_response(response.status_code, response.headers, response.content)
        if self.stats is not None:
            self.stats.request(time.perf_counter() - started, error)
        if self._breaker is not None:
            self._breaker.record(error)
        logger.debug(
            "%s %s account=%s -> %d in %.1fms",
            method,
            C.VOICEMAIL_PATH,
            creds.account,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if error is not None:
            if isinstance(error, RateLimited) and self._limiter is not None:
                self._limiter.penalize(creds.token, error.retry_after or 1.0)
            raise error
        return json_object(response.content)

    def get_voicemail(self, creds: Credentials) -> VoicemailSettings:
        return parse_settings(self._request("GET", creds))

    def set_voicemail(self, creds: Credentials, send: bool, email: str) -> VoicemailSettings:
        self._request("PATCH", creds, patch_body(send, email))
        return VoicemailSettings(email=email, send=send)
