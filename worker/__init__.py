"""What runs in a worker process, in subpackages by concern. Layers, lowest first; a
package imports only from the ones before it (tests/test_structure.py checks):

    core          errors, defaults, settings, log redaction, input checks, Redis URLs, Lua
    api           the Plusofon API: models, error mapping, clients, retry policy
    store         the encrypted credential store
    coordination  shared state in Redis: ordering, rate limit, breaker, stats, bulk records
    engine        the bulk engine (asyncio, engine processes)
    queue         the Celery app, publishing, recovery, leases and heartbeats, dead letters,
                  the worker context

`celery -A worker worker` finds the app as `worker.app`: that attribute (PEP 562, on
first use) installs the worker-side handlers (`worker.queue.worker_signals`) and returns the
Celery app; for `celery -A worker flower` it first refuses an empty FLOWER_BASIC_AUTH
(`worker.flower_guard`). Importing a submodule never builds or installs anything more than
it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from . import flower_guard

        flower_guard.check()  # before anything is built
        from .queue import worker_signals
        from .queue.app import app as celery_app

        worker_signals.install()
        celery_app.set_current()  # the worker's own process: its app is the current one
        globals()["app"] = celery_app
        return celery_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
