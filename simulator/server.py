"""A stand-in for the Plusofon voicemail API: a real HTTP server with fault injection.

Behaves like the vendor's page: `GET`/`PATCH /api/v1/voicemail`, the bearer token
picks the account, `{"message": "User not found.", "code": 500}` with HTTP 200 or
500, 401 for an unknown token, 422 with field errors for a bad body. On top:
latency, random 5xx, HTML 502 pages, 429 with Retry-After, slow responses and
connection resets, either at a rate or scripted per account ("the next two
answers for account a are 502 pages"). Control endpoints live under `/_sim/`.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
MODES = ("ok", "missing-200", "missing-500")


@dataclass(slots=True)
class Account:
    name: str
    email: str = "owner@example.com"
    send: bool = False
    mode: str = "ok"


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0  # JSON-less 503s
    html_502_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: str = "1"
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    reset_rate: float = 0.0
    # Server-side limit in requests per second over all accounts; 0 means none.
    max_rps: int = 0


@dataclass
class State:
    accounts: dict[str, Account] = field(default_factory=dict)  # by token
    faults: Faults = field(default_factory=Faults)
    scripts: dict[str, collections.deque[str]] = field(default_factory=dict)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    patches: collections.Counter[str] = field(default_factory=collections.Counter)
    # Every (send, email) a PATCH applied, per account: a repeat is a duplicate PATCH.
    applied: dict[str, list[list[Any]]] = field(default_factory=dict)
    per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    faults_injected: collections.Counter[str] = field(default_factory=collections.Counter)
    headers_seen: dict[str, dict[str, str]] = field(default_factory=dict)
    # Arrival times of the last requests per account, to check back-off from outside.
    times: dict[str, collections.deque[float]] = field(default_factory=dict)
    total: int = 0
    patch_total: int = 0
    # Lean (for a million accounts): current settings and totals only, no per-account
    # history (requests, patches, applied, times and headers stay empty).
    lean: bool = False


STATE_KEY: web.AppKey[State] = web.AppKey("state", State)


def _json(status: int, body: Any, **headers: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _not_found(mode: str) -> web.Response:
    return _json(200 if mode == "missing-200" else 500, {"message": "User not found.", "code": 500})


async def _fault(kind: str, request: web.Request, state: State) -> web.StreamResponse | None:
    """Play one fault; None means "no fault, answer normally"."""
    state.faults_injected[kind.split(":")[0]] += 1
    name, _, arg = kind.partition(":")
    if name == "502":
        return web.Response(status=502, text=HTML_502, content_type="text/html")
    if name in ("500", "503", "504"):
        return web.Response(status=int(name), text="")
    if name == "500-json":
        return _json(500, {"message": "Server Error"})
    if name == "429":
        return _json(429, {"message": "Too Many Attempts."}, **{"Retry-After": arg or "1"})
    if name == "slow":
        await asyncio.sleep(float(arg or state.faults.slow_seconds))
        return None
    if name == "reset":
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError
    if name == "missing-200" or name == "missing-500":
        return _not_found(name)
    if name in ("401", "422"):
        return _json(int(name), {"message": "scripted", "errors": {"email": ["scripted"]}})
    raise web.HTTPBadRequest(text=f"unknown scripted fault {kind!r}")


def _random_fault(state: State) -> str | None:
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


async def voicemail(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    now = time.time()
    state.total += 1
    state.per_second[int(now)] += 1
    if state.faults.latency_ms:
        await asyncio.sleep(state.faults.latency_ms / 1000)

    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    account = state.accounts.get(token)
    if account is None:
        state.requests["<unauthenticated>"] += 1
        return _json(401, {"message": "Unauthenticated."})
    if not state.lean:
        state.requests[account.name] += 1
        state.times.setdefault(account.name, collections.deque(maxlen=50)).append(now)
        state.headers_seen[account.name] = {
            k: v for k, v in request.headers.items() if k.lower() != "authorization"
        }
    if "Client" not in request.headers:
        return _json(400, {"message": "The Client header is required."})

    if state.faults.max_rps and state.per_second[int(now)] > state.faults.max_rps:
        state.faults_injected["429"] += 1
        return _json(429, {"message": "Too Many Attempts."}, **{"Retry-After": "1"})
    script = state.scripts.get(account.name)
    kind = script.popleft() if script else _random_fault(state)
    if kind is not None:
        response = await _fault(kind, request, state)
        if response is not None:
            return response

    if account.mode != "ok":
        return _not_found(account.mode)
    if request.method == "GET":
        return _json(200, {"email": account.email, "send": account.send})

    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _json(400, {"message": "The body must be JSON."})
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        return _json(422, {"message": "The given data was invalid.", "errors": {}})
    if "send" not in body:
        errors["send"] = ["The send field is required."]
    elif not isinstance(body["send"], bool):
        errors["send"] = ["The send field must be true or false."]
    email = body.get("email")
    if email is None:
        errors["email"] = ["The email field is required."]
    elif not isinstance(email, str) or not EMAIL_RE.match(email):
        errors["email"] = ["The email must be a valid email address."]
    if errors:
        return _json(422, {"message": "The given data was invalid.", "errors": errors})
    account.send, account.email = body["send"], str(email)
    state.patch_total += 1
    if not state.lean:
        state.patches[account.name] += 1
        state.applied.setdefault(account.name, []).append([body["send"], account.email])
    return _json(200, {"success": True})


async def add_accounts(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    rows = await request.json()
    for row in rows if isinstance(rows, list) else [rows]:
        mode = row.get("mode", "ok")
        if mode not in MODES:
            raise web.HTTPBadRequest(text=f"mode must be one of {MODES}")
        state.accounts[row["token"]] = Account(
            row["account"], row.get("email", "owner@example.com"), row.get("send", False), mode
        )
    return _json(200, {"accounts": len(state.accounts)})


async def show_account(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    name = request.match_info["name"]
    for account in state.accounts.values():
        if account.name == name:
            return _json(
                200,
                {
                    **asdict(account),
                    "requests": state.requests[name],
                    "patches": state.patches[name],
                    "headers": state.headers_seen.get(name, {}),
                    "times": list(state.times.get(name, ())),
                    "applied": state.applied.get(name, []),
                },
            )
    raise web.HTTPNotFound(text=f"no account {name!r}")


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    try:
        state.faults = Faults(**{**asdict(state.faults), **body})
    except TypeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return _json(200, asdict(state.faults))


async def set_script(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    state.scripts.setdefault(body["account"], collections.deque()).extend(body["responses"])
    return _json(200, {"queued": len(state.scripts[body["account"]])})


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(
        200,
        {
            "total": state.total,
            "patch_total": state.patch_total,
            "requests": dict(state.requests),
            "patches": dict(state.patches),
            "faults_injected": dict(state.faults_injected),
            "max_per_second": max(state.per_second.values(), default=0),
            "per_second": {str(k): v for k, v in sorted(state.per_second.items())},
        },
    )


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    keep_accounts = request.query.get("accounts") != "1"
    fresh = State(accounts=state.accounts if keep_accounts else {}, lean=state.lean)
    request.app[STATE_KEY].__dict__.update(fresh.__dict__)
    return _json(200, {"reset": True})


async def ping(request: web.Request) -> web.Response:
    return _json(200, {"ok": True})


def make_app(state: State | None = None) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state or State()
    app.router.add_route("GET", "/api/v1/voicemail", voicemail)
    app.router.add_route("PATCH", "/api/v1/voicemail", voicemail)
    app.router.add_post("/_sim/accounts", add_accounts)
    app.router.add_get("/_sim/accounts/{name}", show_account)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_post("/_sim/script", set_script)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/ping", ping)
    return app


def generated_accounts(count: int, prefix: str = "acct") -> list[dict[str, Any]]:
    """Accounts `acct-000001`... with tokens `tok-acct-000001`...: for demos and benchmarks."""
    return [
        {"account": f"{prefix}-{i:06d}", "token": f"tok-{prefix}-{i:06d}"}
        for i in range(1, count + 1)
    ]


def load_accounts_csv(path: str) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))  # `seed` reads "send" as true/false


def seed(state: State, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        state.accounts[row["token"]] = Account(
            row["account"],
            row.get("email") or "owner@example.com",
            str(row.get("send", False)).strip().lower() == "true",  # a CSV's text too
            row.get("mode") or "ok",
        )


async def serve(host: str, port: int, state: State) -> None:
    runner = web.AppRunner(make_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server: Any = site._server
    sockets = server.sockets if server else []
    bound = sockets[0].getsockname()[1] if sockets else port
    # The launcher reads this line to learn the port when it asked for port 0.
    print(f"simulator listening on http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    latency_ms: float = 0.0,
    generate: int = 0,
    accounts_csv: str | None = None,
    lean: bool = False,
) -> None:
    state = State(faults=Faults(latency_ms=latency_ms), lean=lean)
    if generate:
        seed(state, generated_accounts(generate))
    if accounts_csv:
        seed(state, load_accounts_csv(accounts_csv))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(host, port, state))
