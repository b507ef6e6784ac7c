"""`voicemail health`: is this deployment able to run jobs? One line per check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from worker.core import constants as C
from worker.core.connections import redis_client, text
from worker.core.keys import ACCOUNTS, ACCOUNTS_CHECK, NODES, reaped
from worker.core.settings import Settings
from worker.store.credentials import key_fingerprint


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _timed(name: str, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # every failure is a failed check, described in one line
        return Check(name, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
    return Check(name, True, f"{detail} ({(time.perf_counter() - started) * 1000:.1f} ms)")


def check_redis(settings: Settings) -> Check:
    from tasks.producer import safe_url

    def probe() -> str:
        client = redis_client(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        return f"{safe_url(settings.redis_url)} answers"

    return _timed("redis", probe)


def check_redis_fitness(settings: Settings) -> Check:
    """The same verdict the worker reaches at start (worker.core.redis_server)."""
    from worker.core.redis_server import check_server

    client = redis_client(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        fitness = check_server(client)
    except Exception as exc:
        return Check("redis policy", False, f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    notes = "; ".join(f"warning: {w}" for w in fitness.warnings)
    if fitness.problem and not settings.allow_eviction:
        return Check("redis policy", False, fitness.problem)
    if fitness.problem:
        notes = "; ".join(filter(None, [f"warning: {fitness.problem}", notes]))
    return Check("redis policy", True, notes or "noeviction, and persisted")


def check_workers(settings: Settings, node: str | None) -> Check:
    from worker.queue.app import app

    def probe() -> str:
        replies = app.control.ping(destination=[node] if node else None, timeout=2.0)
        names = sorted(name for reply in replies or [] for name in reply)
        if not names:
            raise RuntimeError(f"no worker answered a ping{f' as {node}' if node else ''}")
        ghosts = reaped_workers(settings, names)
        if ghosts:
            raise RuntimeError(
                "; ".join(
                    f"{name} runs as instance {inst}, marked reaped: its claims are refused"
                    for name, inst in ghosts.items()
                )
            )
        return ", ".join(names)

    return _timed("workers", probe)


def reaped_workers(settings: Settings, names: list[str]) -> dict[str, str]:
    """The workers among `names` whose current instance (as their heartbeat records it) is
    marked reaped: found dead by another worker, they claim nothing until they go on
    under a new instance, a second later when all is well."""
    client = redis_client(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        current = [text(i) if i is not None else None for i in client.hmget(NODES, names)]
        known = {name: inst for name, inst in zip(names, current, strict=True) if inst}
        with client.pipeline(transaction=False) as pipe:
            for inst in known.values():
                pipe.exists(reaped(inst))
            marked = pipe.execute()
    finally:
        client.close()
    return {name: inst for (name, inst), dead in zip(known.items(), marked, strict=True) if dead}


def check_store(settings: Settings) -> Check:
    def probe() -> str:
        client = redis_client(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            stored = client.get(ACCOUNTS_CHECK)
            accounts = client.hlen(ACCOUNTS)
        finally:
            client.close()
        if settings.secret_key is None and settings.token is not None:
            # One-account mode: the worker's PLUSOFON_TOKEN serves `default`, no key needed.
            return f"one-account mode: PLUSOFON_TOKEN serves account {C.DEFAULT_ACCOUNT!r}"
        if settings.secret_key is None:
            raise RuntimeError("VOICEMAIL_SECRET_KEY is not set: workers cannot read tokens")
        keys = [settings.secret_key.get_secret_value(), *settings.old_secret_keys()]
        wrote = text(stored) if stored is not None else None
        if wrote is not None and wrote not in {key_fingerprint(k) for k in keys}:
            raise RuntimeError("VOICEMAIL_SECRET_KEY is not the key the store was written with")
        return f"{accounts} accounts, key matches" if stored else f"{accounts} accounts"

    return _timed("credential store", probe)


def check_api(settings: Settings) -> Check:
    def probe() -> str:
        # No token: any HTTP answer (401 expected) proves the API is reachable.
        response = httpx.get(
            settings.api_url + C.VOICEMAIL_PATH,
            headers={"Accept": "application/json", "Client": str(settings.client_id)},
            timeout=5,
        )
        return f"{settings.api_url} answered HTTP {response.status_code}"

    return _timed("api", probe)


def run_checks(settings: Settings, *, node: str | None, api: bool) -> list[Check]:
    checks = [check_redis(settings)]
    if checks[0].ok:
        checks += [
            check_redis_fitness(settings),
            check_workers(settings, node),
            check_store(settings),
        ]
    if api:
        checks.append(check_api(settings))
    return checks
