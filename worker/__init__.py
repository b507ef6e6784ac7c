"""voicemail-worker: the Celery app, settings, Plusofon client and credential store.

`celery -A worker worker` loads `worker.app`. Names load on first use (PEP 562):
importing `worker.errors` must not build the Celery app, whose broker URL comes
from the environment at that moment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import app
    from .client import Credentials, PlusofonClient, VoicemailSettings
    from .settings import Settings, get_settings

_WHERE = {
    "app": ".app",
    "Credentials": ".client",
    "PlusofonClient": ".client",
    "VoicemailSettings": ".client",
    "Settings": ".settings",
    "get_settings": ".settings",
}
__all__ = ["Credentials", "PlusofonClient", "Settings", "VoicemailSettings", "app", "get_settings"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
