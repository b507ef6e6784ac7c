"""Per-process resources of a worker: settings, Redis, the credential store, the HTTP client.

Created on first use in each process (prefork children, threads and solo pools
alike) and closed at shutdown, as arq keeps them in `ctx`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import redis

from .breaker import Breaker
from .client import PlusofonClient
from .connections import redis_client
from .credentials import CredentialStore
from .ordering import CLAIM_SCRIPT, RELEASE_SCRIPT
from .ratelimit import RateLimiter
from .settings import Settings, get_settings
from .stats import Stats


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: CredentialStore
    client: PlusofonClient
    claim: Any = None
    release: Any = None

    def __post_init__(self) -> None:
        self.claim = self.redis.register_script(CLAIM_SCRIPT)
        self.release = self.redis.register_script(RELEASE_SCRIPT)

    def close(self) -> None:
        self.client.close()
        self.redis.close()


_lock = threading.Lock()
_current: tuple[int, Runtime] | None = None


def runtime() -> Runtime:
    global _current
    pid = os.getpid()
    current = _current
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _current is None or _current[0] != pid:
            settings = get_settings()
            client = redis_client(settings.redis_url)
            _current = (
                pid,
                Runtime(
                    settings=settings,
                    redis=client,
                    store=CredentialStore.from_settings(settings, client),
                    client=PlusofonClient(
                        settings,
                        limiter=RateLimiter(client, settings.rate_limit, settings.token_rate_limit),
                        breaker=Breaker(client, settings),
                        stats=Stats(),
                    ),
                ),
            )
        return _current[1]


def current_runtime() -> Runtime | None:
    """This process's runtime if it was started, without starting one."""
    current = _current
    return current[1] if current is not None and current[0] == os.getpid() else None


def close_runtime() -> None:
    global _current
    with _lock:
        if _current is not None and _current[0] == os.getpid():
            _current[1].close()
        _current = None
