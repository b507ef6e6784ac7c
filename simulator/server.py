"""A stand-in for the Plusofon voicemail API: a real HTTP server with fault injection.

Behaves like the vendor's page: `GET`/`PATCH /api/v1/voicemail`, the bearer token
picks the account, `{"message": "User not found.", "code": 500}` with HTTP 200 or
500, 401 for an unknown token, 422 with field errors for a bad body. On top:
latency, random 5xx, HTML 502 pages, 429 with Retry-After, slow responses and
connection resets, either at a rate or scripted per account ("the next two
answers for account a are 502 pages"). Control endpoints live under `/_sim/`.

A slow vendor that applies late: a PATCH answered `late-504:D`, `late-502:D` or
`late-timeout:D` has its body read and checked, is answered at once with a gateway's
504 or 502 (no JSON body), or held open past the client's read timeout, and is applied
D seconds later; `apply-slow:S` applies at once and answers S seconds later. Scripted
per account, or for a share of PATCHes (`late_rate`, `late_kind`, `late_delay`). Every
late landing is listed at `/_sim/late`, with its time.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import time
from dataclasses import asdict
from typing import Any

from aiohttp import web

from .faults import answer_late, play_fault, random_fault, random_late
from .state import (
    EMAIL_RE,
    LATE_KINDS,
    MODES,
    STATE_KEY,
    Account,
    Faults,
    State,
    apply_patch,
    json_response,
    not_found,
)


async def voicemail(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    now = time.time()
    state.total += 1
    state.patch_requests += request.method == "PATCH"
    state.per_second[int(now)] += 1
    if state.faults.latency_ms:
        await asyncio.sleep(state.faults.latency_ms / 1000)

    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    account = state.accounts.get(token)
    if account is None:
        state.requests["<unauthenticated>"] += 1
        return json_response(401, {"message": "Unauthenticated."})
    if not state.lean:
        state.requests[account.name] += 1
        state.times.setdefault(account.name, collections.deque(maxlen=50)).append(now)
        state.headers_seen[account.name] = {
            k: v for k, v in request.headers.items() if k.lower() != "authorization"
        }
    if "Client" not in request.headers:
        return json_response(400, {"message": "The Client header is required."})

    if state.faults.max_rps and state.per_second[int(now)] > state.faults.max_rps:
        state.faults_injected["429"] += 1
        return json_response(429, {"message": "Too Many Attempts."}, **{"Retry-After": "1"})
    script = state.scripts.get(account.name)
    kind = script.popleft() if script else random_fault(state)
    late: str | None = None
    if kind is not None and kind.startswith(LATE_KINDS):
        if request.method == "PATCH":
            late = kind
        elif script is not None:  # a late answer is for a PATCH: keep it for the next one
            script.appendleft(kind)
    elif kind is not None:
        response = await play_fault(kind, request, state)
        if response is not None:
            return response
    if late is None and request.method == "PATCH":
        late = random_late(state)

    if account.mode != "ok":
        return not_found(account.mode)
    if request.method == "GET":
        return json_response(200, {"email": account.email, "send": account.send})

    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return json_response(400, {"message": "The body must be JSON."})
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        return json_response(422, {"message": "The given data was invalid.", "errors": {}})
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
        return json_response(422, {"message": "The given data was invalid.", "errors": errors})
    if late is not None:
        return await answer_late(late, state, account, body["send"], str(email))
    apply_patch(state, account, body["send"], str(email))
    return json_response(200, {"success": True})


async def late_landings(request: web.Request) -> web.Response:
    return json_response(200, request.app[STATE_KEY].late)


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
    return json_response(200, {"accounts": len(state.accounts)})


async def show_account(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    name = request.match_info["name"]
    for account in state.accounts.values():
        if account.name == name:
            return json_response(
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


async def set_values(request: web.Request) -> web.Response:
    """Change an account's settings behind the client's back: counted as no request and
    no PATCH (`{"send": bool, "email": str}`, either may be left out)."""
    state = request.app[STATE_KEY]
    name = request.match_info["name"]
    body = await request.json()
    for account in state.accounts.values():
        if account.name == name:
            account.send = bool(body.get("send", account.send))
            account.email = str(body.get("email", account.email))
            return json_response(200, asdict(account))
    raise web.HTTPNotFound(text=f"no account {name!r}")


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    try:
        state.faults = Faults(**{**asdict(state.faults), **body})
    except TypeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return json_response(200, asdict(state.faults))


async def set_script(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await request.json()
    state.scripts.setdefault(body["account"], collections.deque()).extend(body["responses"])
    return json_response(200, {"queued": len(state.scripts[body["account"]])})


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response(
        200,
        {
            "total": state.total,
            "patch_requests": state.patch_requests,
            "patch_total": state.patch_total,
            "requests": dict(state.requests),
            "patches": dict(state.patches),
            "faults_injected": dict(state.faults_injected),
            "max_per_second": max(state.per_second.values(), default=0),
            "late_landings": len(state.late),
            "per_second": {str(k): v for k, v in sorted(state.per_second.items())},
        },
    )


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    keep_accounts = request.query.get("accounts") != "1"
    fresh = State(accounts=state.accounts if keep_accounts else {}, lean=state.lean)
    request.app[STATE_KEY].__dict__.update(fresh.__dict__)
    return json_response(200, {"reset": True})


async def ping(request: web.Request) -> web.Response:
    return json_response(200, {"ok": True})


def make_app(state: State | None = None) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state or State()
    app.router.add_route("GET", "/api/v1/voicemail", voicemail)
    app.router.add_route("PATCH", "/api/v1/voicemail", voicemail)
    app.router.add_post("/_sim/accounts", add_accounts)
    app.router.add_get("/_sim/accounts/{name}", show_account)
    app.router.add_post("/_sim/accounts/{name}/values", set_values)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_post("/_sim/script", set_script)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/ping", ping)
    app.router.add_get("/_sim/late", late_landings)
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
