"""voicemail-worker: the Celery app, settings, Plusofon client and credential store.

`celery -A worker worker` loads `worker.app`.
"""

from .app import app
from .client import Credentials, PlusofonClient, VoicemailSettings
from .settings import Settings, get_settings

__all__ = ["Credentials", "PlusofonClient", "Settings", "VoicemailSettings", "app", "get_settings"]
