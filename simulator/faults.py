"""The faults the simulator plays: scripted per account or at a rate."""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from .state import HTML_502, Account, State, apply_patch, json_response, not_found


async def play_fault(kind: str, request: web.Request, state: State) -> web.StreamResponse | None:
    """Play one fault; None means "no fault, answer normally"."""
    state.faults_injected[kind.split(":")[0]] += 1
    name, _, arg = kind.partition(":")
    if name == "502":
        return web.Response(status=502, text=HTML_502, content_type="text/html")
    if name in ("500", "503", "504"):
        return web.Response(status=int(name), text="")
    if name == "500-json":
        return json_response(500, {"message": "Server Error"})
    if name == "429":
        return json_response(429, {"message": "Too Many Attempts."}, **{"Retry-After": arg or "1"})
    if name == "slow":
        await asyncio.sleep(float(arg or state.faults.slow_seconds))
        return None
    if name == "reset":
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError
    if name == "missing-200" or name == "missing-500":
        return not_found(name)
    if name in ("401", "422"):
        return json_response(int(name), {"message": "scripted", "errors": {"email": ["scripted"]}})
    raise web.HTTPBadRequest(text=f"unknown scripted fault {kind!r}")


def random_fault(state: State) -> str | None:
    f = state.faults
    roll = random.random()
    for kind, rate in (
        ("503", f.error_rate),
        ("502", f.html_502_rate),
        (f"429:{f.retry_after}", f.rate_limit_rate),
        ("reset", f.reset_rate),
        (f"slow:{f.slow_seconds}", f.slow_rate),
    ):
        if roll < rate:
            return kind
        roll -= rate
    return None


def random_late(state: State) -> str | None:
    f = state.faults
    if not f.late_rate or random.random() >= f.late_rate:
        return None
    kind = f.late_kind if f.late_kind == "apply-slow" else f"late-{f.late_kind}"
    return f"{kind}:{f.late_delay}"


async def answer_late(
    kind: str, state: State, account: Account, send: bool, email: str
) -> web.Response:
    """An ambiguous answer to a PATCH that the vendor applies anyway: late, or first."""
    name, _, arg = kind.partition(":")
    delay = float(arg) if arg else state.faults.late_delay
    state.faults_injected[name] += 1
    if name == "apply-slow":
        apply_patch(state, account, send, email)
        await asyncio.sleep(delay)
        return json_response(200, {"success": True})
    loop = asyncio.get_running_loop()
    loop.call_later(delay, lambda: apply_patch(state, account, send, email, late=True))
    if name == "late-504":
        return web.Response(status=504, text="")
    if name == "late-502":
        return web.Response(status=502, text=HTML_502, content_type="text/html")
    await asyncio.sleep(state.faults.late_hold)  # the client's read timeout ends it first
    return json_response(200, {"success": True})
