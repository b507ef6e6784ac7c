"""The wire: headers, timeouts, and the two functions that say what went wrong: one maps
an answer to an error (`error_from_response`), one a failed exchange (`transport_error`)."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from ..core import constants as C
from ..core.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeout,
    AuthError,
    CircuitOpen,
    PlusofonError,
    RateLimited,
    ServerError,
    UserNotFound,
    ValidationError,
)
from ..core.logs import redact
from ..core.settings import Settings
from .models import Credentials
from .retry import parse_retry_after

_MAX_MESSAGE = 200

# SO_LINGER on, 0 s: closing a connection resets it and drops whatever it had not sent.
# A request abandoned at its timeout (a worker cut off from the network, say) must never
# reach the API later by TCP retransmission, after another worker applied a newer change.
ABORT_ON_CLOSE = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


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
        # The API's own JSON error says it refused; a gateway's page or an empty body says
        # nothing about whether the request reached the API behind it.
        return ServerError(
            f"HTTP {status} from Plusofon API{detail}", status_code=status, refused=bool(shape)
        )
    if status == 404 and not shape:
        return ApiError("HTTP 404: no such endpoint, check PLUSOFON_API_URL", status_code=404)
    return ApiError(message or f"HTTP {status}: unexpected answer", status_code=status)


def transport_error(exc: BaseException) -> ApiTimeout | ApiConnectionError:
    """The error a failed exchange means: `ApiTimeout` for a timeout (httpx's, or a
    `TimeoutError` such as aiohttp's), `ApiConnectionError` for any other failure."""
    name = type(exc).__name__
    unsent = _never_sent(exc)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ApiTimeout(f"{name}: timed out talking to Plusofon API", refused=unsent)
    # A transport that refuses a header quotes it (h11: "Illegal header value b'Bearer
    # …'"): the text goes into results, events and dead letters, so the token comes out.
    return ApiConnectionError(f"{name}: {_short(redact(str(exc))) or name}", refused=unsent)


# Failures to connect: the request never left this host (httpx's, aiohttp's, the OS's).
_CONNECT_FAILURES = frozenset(
    {"ConnectError", "ConnectTimeout", "ClientConnectorError", "ConnectionTimeoutError"}
)


def _never_sent(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionRefusedError):
        return True
    return any(cls.__name__ in _CONNECT_FAILURES for cls in type(exc).__mro__)


@contextmanager
def map_transport_errors(*also: type[BaseException]) -> Iterator[None]:
    """Raise httpx's transport failures, and those of the types in `also` (another HTTP
    library's), as `transport_error` maps them, `from` the original."""
    caught: tuple[type[BaseException], ...] = (httpx.TransportError, *also)
    try:
        yield
    except caught as exc:
        raise transport_error(exc) from exc


def check_breaker(pause: float) -> None:
    if pause > 0:
        raise CircuitOpen(
            f"circuit breaker open: most recent API calls failed, pausing {pause:.1f}s",
            status_code=None,
            retry_after=pause,
        )


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
