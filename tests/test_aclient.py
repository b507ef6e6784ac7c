"""The asyncio client: against httpx.MockTransport, and over a real socket with aiohttp."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from simulator import stack
from worker.api.aclient import AsyncPlusofonClient
from worker.api.models import Credentials, VoicemailSettings
from worker.api.retry import acall_with_retries
from worker.core import errors
from worker.core.settings import load_settings

T = TypeVar("T")
CREDS = Credentials("acme", "secret-token-123")


def run(make: Callable[[AsyncPlusofonClient], Awaitable[T]], client: AsyncPlusofonClient) -> T:
    async def main() -> T:
        try:
            return await make(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> AsyncPlusofonClient:
    settings = load_settings(PLUSOFON_API_URL="http://api.test")
    return AsyncPlusofonClient(settings, transport=httpx.MockTransport(handler))


def test_headers_and_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True})

    result = run(lambda c: c.set_voicemail(CREDS, True, "vm@acme.ru"), mock(handler))
    assert result == VoicemailSettings("vm@acme.ru", True)
    request = seen[0]
    assert (request.method, str(request.url)) == ("PATCH", "http://api.test/api/v1/voicemail")
    assert json.loads(request.content) == {"send": True, "email": "vm@acme.ru"}
    assert request.headers["Authorization"] == "Bearer secret-token-123"
    assert request.headers["Client"] == "10553"
    assert request.headers["Accept"] == request.headers["Content-Type"] == "application/json"
    assert request.extensions["timeout"]["connect"] == 5.0


@pytest.mark.parametrize("status", [200, 500])
def test_user_not_found(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "User not found.", "code": 500})

    with pytest.raises(errors.UserNotFound):
        run(lambda c: c.get_voicemail(CREDS), mock(handler))


@pytest.fixture
def real(simulator: stack.Service, sim: stack.SimulatorControl) -> AsyncPlusofonClient:
    sim.add_accounts([{"account": "async-a", "token": "tok-async-a"}])
    settings = load_settings(PLUSOFON_API_URL=simulator.url, VOICEMAIL_READ_TIMEOUT=1)
    return AsyncPlusofonClient(settings)


ASYNC_A = Credentials("async-a", "tok-async-a")


def test_roundtrip_over_aiohttp(real: AsyncPlusofonClient) -> None:
    async def both(client: AsyncPlusofonClient) -> VoicemailSettings:
        await client.set_voicemail(ASYNC_A, False, "async@acme.ru")
        return await client.get_voicemail(ASYNC_A)

    assert run(both, real) == VoicemailSettings("async@acme.ru", False)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("502", errors.ServerError),
        ("429:3", errors.RateLimited),
        ("reset", errors.TransientError),
        ("slow:3", errors.ApiTimeout),
        ("missing-500", errors.UserNotFound),
    ],
)
def test_faults_over_aiohttp(
    real: AsyncPlusofonClient, sim: stack.SimulatorControl, script: str, expected: type[Exception]
) -> None:
    sim.script("async-a", [script])
    # PATCH: aiohttp silently repeats an idempotent GET once when the server drops it.
    with pytest.raises(expected):
        run(lambda c: c.set_voicemail(ASYNC_A, True, "x@acme.ru"), real)


def test_async_retries_through_blips(
    real: AsyncPlusofonClient, sim: stack.SimulatorControl
) -> None:
    sim.script("async-a", ["502", "reset"])
    before = sim.account("async-a")["requests"]
    settings = load_settings(VOICEMAIL_RETRY_BASE_DELAY=0, VOICEMAIL_RETRY_ATTEMPTS=3)
    result: Any = run(
        lambda c: acall_with_retries(settings, lambda: c.set_voicemail(ASYNC_A, True, "r@a.ru")),
        real,
    )
    assert isinstance(result, VoicemailSettings)
    assert sim.account("async-a")["requests"] - before == 3
