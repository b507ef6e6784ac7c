from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from simulator import stack
from worker.api.client import PlusofonClient
from worker.api.models import Credentials, VoicemailSettings
from worker.core import errors
from worker.core.errors import RateLimited
from worker.core.settings import Settings, load_settings

Handler = Callable[[httpx.Request], httpx.Response]


def settings_for(url: str = "http://api.test", **extra: Any) -> Settings:
    return load_settings(PLUSOFON_API_URL=url, **extra)


def mock_client(handler: Handler, **extra: Any) -> PlusofonClient:
    return PlusofonClient(settings_for(**extra), transport=httpx.MockTransport(handler))


CREDS = Credentials("acme", "secret-token-123")


def test_get_sends_the_documented_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"email": "vm@acme.ru", "send": True})

    with mock_client(handler) as client:
        assert client.get_voicemail(CREDS) == VoicemailSettings("vm@acme.ru", True)
    request = seen[0]
    assert request.method == "GET"
    assert request.url == "http://api.test/api/v1/voicemail"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Client"] == "10553"
    assert request.headers["Authorization"] == "Bearer secret-token-123"


def test_a_base_path_is_kept_and_no_cookie_crosses_accounts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"Set-Cookie": "session=of-acme; Path=/"}
        return httpx.Response(200, json={"email": "vm@acme.ru", "send": True}, headers=headers)

    settings = settings_for("http://api.test/proxy/")
    with PlusofonClient(settings, transport=httpx.MockTransport(handler)) as client:
        client.get_voicemail(CREDS)
        client.get_voicemail(Credentials("other", "token-of-other"))
    assert [str(r.url) for r in seen] == ["http://api.test/proxy/api/v1/voicemail"] * 2
    assert "Cookie" not in seen[1].headers
    assert seen[1].headers["Authorization"] == "Bearer token-of-other"


def test_patch_sends_both_fields_and_per_account_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True})

    with mock_client(handler) as client:
        result = client.set_voicemail(Credentials("acme", "t", client_id=777), False, "a@b.ru")
    assert result == VoicemailSettings("a@b.ru", False)
    assert seen[0].method == "PATCH"
    assert json.loads(seen[0].content) == {"send": False, "email": "a@b.ru"}
    assert seen[0].headers["Client"] == "777"


@pytest.mark.parametrize("status", [200, 500])
def test_user_not_found_in_both_forms(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "User not found.", "code": 500})

    with (
        mock_client(handler) as client,
        pytest.raises(errors.UserNotFound, match=r"User not found\."),
    ):
        client.get_voicemail(CREDS)


def test_success_false_is_an_error() -> None:
    response = httpx.Response(200, json={"success": False})
    with mock_client(lambda r: response) as client, pytest.raises(errors.ApiError):
        client.set_voicemail(CREDS, True, "a@b.ru")


def test_malformed_get_answer_is_an_error() -> None:
    response = httpx.Response(200, json={"email": 5})
    with (
        mock_client(lambda r: response) as client,
        pytest.raises(errors.ApiError, match="GET answer"),
    ):
        client.get_voicemail(CREDS)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), errors.ApiConnectionError),
        (httpx.ReadError("reset by peer"), errors.ApiConnectionError),
        (httpx.RemoteProtocolError("bad"), errors.ApiConnectionError),
        (httpx.ConnectTimeout("slow"), errors.ApiTimeout),
        (httpx.ReadTimeout("slow"), errors.ApiTimeout),
        (httpx.PoolTimeout("busy"), errors.ApiTimeout),
    ],
)
def test_transport_errors_are_transient_and_chained(
    exc: httpx.TransportError, expected: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with mock_client(handler) as client, pytest.raises(expected) as info:
        client.get_voicemail(CREDS)
    assert info.value.__cause__ is exc
    assert "secret-token-123" not in str(info.value)


# --- the same client against the simulator over a real socket -----------------


@pytest.fixture
def real_client(simulator: stack.Service) -> PlusofonClient:
    return PlusofonClient(settings_for(simulator.url, VOICEMAIL_READ_TIMEOUT=2))


def test_roundtrip_against_simulator(
    real_client: PlusofonClient, sim: stack.SimulatorControl
) -> None:
    sim.add_accounts([{"account": "client-a", "token": "tok-client-a"}])
    creds = Credentials("client-a", "tok-client-a")
    with real_client:
        real_client.set_voicemail(creds, True, "new@acme.ru")
        assert real_client.get_voicemail(creds) == VoicemailSettings("new@acme.ru", True)
    state = sim.account("client-a")
    assert state["headers"]["Client"] == "10553"
    assert state["patches"] == 1


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("502", errors.ServerError),
        ("503", errors.ServerError),
        ("429:2", errors.RateLimited),
        ("missing-200", errors.UserNotFound),
        ("missing-500", errors.UserNotFound),
        ("reset", errors.ApiConnectionError),
        ("slow:5", errors.ApiTimeout),
    ],
)
def test_simulator_faults_map_to_errors(
    real_client: PlusofonClient,
    sim: stack.SimulatorControl,
    script: str,
    expected: type[Exception],
) -> None:
    name = f"fault-{script.replace(':', '-')}"
    sim.add_accounts([{"account": name, "token": f"tok-{name}"}])
    sim.script(name, [script])
    with real_client, pytest.raises(expected) as info:
        real_client.get_voicemail(Credentials(name, f"tok-{name}"))
    if isinstance(info.value, errors.RateLimited):
        assert info.value.retry_after == 2.0


def test_unknown_token_is_auth_error(real_client: PlusofonClient) -> None:
    with real_client, pytest.raises(errors.AuthError):
        real_client.get_voicemail(Credentials("nobody", "tok-nobody"))


def test_simulator_validates_patch_body(
    simulator: stack.Service, sim: stack.SimulatorControl
) -> None:
    sim.add_accounts([{"account": "client-v", "token": "tok-client-v"}])
    headers = {"Authorization": "Bearer tok-client-v", "Client": "10553"}
    response = httpx.patch(
        f"{simulator.url}/api/v1/voicemail", json={"send": "yes"}, headers=headers
    )
    error = errors_of(response)
    assert isinstance(error, errors.ValidationError)
    assert set(error.errors) == {"send", "email"}


def errors_of(response: httpx.Response) -> errors.PlusofonError | None:
    from worker.api.protocol import error_from_response

    return error_from_response(response.status_code, response.headers, response.content)


# Race 4 in docs/reliability.md: Retry-After is capped everywhere.


class _RecordingLimiter:
    def __init__(self) -> None:
        self.penalties: list[float] = []

    def acquire(self, token: str) -> float:
        return 0.0

    def penalize(self, token: str, seconds: float) -> None:
        self.penalties.append(seconds)


def test_a_huge_retry_after_parks_a_token_no_longer_than_the_cap() -> None:
    settings = load_settings(PLUSOFON_API_URL="http://api.test", VOICEMAIL_REQUEUE_MAX_DELAY=600)
    limiter = _RecordingLimiter()
    transport = httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"Retry-After": "86400"}, json={})
    )
    with (
        PlusofonClient(settings, transport=transport, limiter=limiter) as client,
        pytest.raises(RateLimited),
    ):
        client.get_voicemail(Credentials("acme", "t"))
    assert limiter.penalties == [600]


# Race 5 in docs/reliability.md: Redis trouble never fails an applied change.


class _BrokenBreaker:
    def wait_time(self) -> float:
        return 0.0

    def record(self, exc: BaseException | None) -> None:
        raise redis.ConnectionError("Redis went away")


def test_redis_gone_after_an_applied_patch_is_not_a_failure() -> None:
    settings = load_settings(PLUSOFON_API_URL="http://api.test")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"success": True}))
    with PlusofonClient(settings, transport=transport, breaker=_BrokenBreaker()) as client:
        result = client.set_voicemail(Credentials("acme", "t"), True, "a@b.ru")
    assert result.email == "a@b.ru"
