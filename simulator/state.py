"""The simulator's state: its accounts, the faults it plays, what it saw."""

from __future__ import annotations

import collections
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
MODES = ("ok", "missing-200", "missing-500")
LATE_KINDS = ("late-504", "late-502", "late-timeout", "apply-slow")


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
    # A share of PATCHes answered ambiguously and applied `late_delay` s later.
    late_rate: float = 0.0
    late_kind: str = "504"  # 504, 502, timeout or apply-slow
    late_delay: float = 2.0
    late_hold: float = 60.0  # how long a `timeout` answer is held open


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
    patch_total: int = 0  # PATCHes applied, late ones included
    patch_requests: int = 0  # PATCH requests received, whatever their answer
    # PATCHes applied after their answer: {"account", "send", "email", "at"} each.
    late: list[dict[str, Any]] = field(default_factory=list)
    # Lean (for a million accounts): current settings and totals only, no per-account
    # history (requests, patches, applied, times and headers stay empty).
    lean: bool = False


STATE_KEY: web.AppKey[State] = web.AppKey("state", State)


def json_response(status: int, body: Any, **headers: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def not_found(mode: str) -> web.Response:
    return json_response(
        200 if mode == "missing-200" else 500, {"message": "User not found.", "code": 500}
    )


def apply_patch(
    state: State, account: Account, send: bool, email: str, *, late: bool = False
) -> None:
    account.send, account.email = send, email
    state.patch_total += 1
    if not state.lean:
        state.patches[account.name] += 1
        state.applied.setdefault(account.name, []).append([send, email])
    if late:
        state.late.append(
            {"account": account.name, "send": send, "email": email, "at": time.time()}
        )
