"""The simulator plays a vendor that applies late: what the ambiguity tests rest on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulator import stack

from .conftest import SimAccount

pytestmark = pytest.mark.integration


def patch(url: str, token: str, email: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.patch(
        f"{url}/api/v1/voicemail",
        json={"send": True, "email": email},
        headers={"Authorization": f"Bearer {token}", "Client": "10553"},
        timeout=timeout,
    )


def landed(sim: stack.SimulatorControl, name: str, email: str, within: float = 10.0) -> float:
    """When the simulator applied `email` to account `name` late (polled until `within`)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for landing in sim.late_landings():
            if landing["account"] == name and landing["email"] == email:
                return float(landing["at"])
        time.sleep(0.05)
    raise AssertionError(f"{email} never landed on {name}: {sim.late_landings()}")


@pytest.mark.parametrize(("kind", "status"), [("late-504", 504), ("late-502", 502)])
def test_a_gateway_error_whose_change_lands_later(
    simulator: stack.Service,
    sim: stack.SimulatorControl,
    make_account: Callable[..., SimAccount],
    kind: str,
    status: int,
) -> None:
    account = make_account(imported=False)
    sim.script(account.name, [f"{kind}:0.5"])
    answered = time.time()
    response = patch(simulator.url, account.token, "late@example.com")
    assert response.status_code == status
    assert "application/json" not in response.headers.get("content-type", "")
    assert sim.account(account.name)["email"] != "late@example.com"  # not yet
    assert landed(sim, account.name, "late@example.com") >= answered + 0.5
    assert sim.account(account.name)["email"] == "late@example.com"


def test_a_read_timeout_whose_change_lands_later(
    simulator: stack.Service, sim: stack.SimulatorControl, make_account: Callable[..., SimAccount]
) -> None:
    account = make_account(imported=False)
    sim.script(account.name, ["late-timeout:0.5"])
    with pytest.raises(httpx.ReadTimeout):
        patch(simulator.url, account.token, "held@example.com", timeout=0.2)
    landed(sim, account.name, "held@example.com")


def test_apply_first_then_answer_slowly(
    simulator: stack.Service, sim: stack.SimulatorControl, make_account: Callable[..., SimAccount]
) -> None:
    account = make_account(imported=False)
    sim.script(account.name, ["apply-slow:1"])
    with pytest.raises(httpx.ReadTimeout):
        patch(simulator.url, account.token, "first@example.com", timeout=0.3)
    assert sim.account(account.name)["email"] == "first@example.com"


def test_a_share_of_patches_apply_late(
    simulator: stack.Service, sim: stack.SimulatorControl, make_account: Callable[..., SimAccount]
) -> None:
    accounts = [make_account(imported=False) for _ in range(3)]
    sim.faults(late_rate=1.0, late_kind="504", late_delay=0.2)
    try:
        statuses = [patch(simulator.url, a.token, "s@example.com").status_code for a in accounts]
        # A GET is never answered late: only a PATCH's change can land after its answer.
        get: Any = httpx.get(
            f"{simulator.url}/api/v1/voicemail",
            headers={"Authorization": f"Bearer {accounts[0].token}", "Client": "10553"},
        )
    finally:
        sim.faults(late_rate=0.0)
    assert statuses == [504, 504, 504]
    assert get.status_code == 200
    for account in accounts:
        landed(sim, account.name, "s@example.com")
