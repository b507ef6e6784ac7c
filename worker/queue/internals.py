"""Every kombu and Celery internal this code touches, checked when a worker starts.

A release that renames one must stop the worker at start, naming the versions, not fail
later inside a catch-all: `celery.worker.state.scheduled_requests` missing, say, would
fail every lease tick quietly, and no lease, reap or sweep would ever run. So `require()`
runs first in `install()` and exits with one line (a non-zero exit) on anything missing.

- `celery.worker.state`'s `active_requests`, `reserved_requests`,
  `scheduled_requests` and `requests` (the lease thread:
  `worker.queue.lease.held_delivery_tags`);
- kombu's Redis `QoS.restore_unacked(self, client)`, `_delivered`, `restore_by_tag`,
  `ack`, `reject` and `Channel._create_client(self, asynchronous)` with its `pool`
  property (`worker.queue.kombu_patches`; `restore_by_tag` gives back held deliveries);
  a kombu virtual channel's `qos` (`worker_signals.restore`);
- aiohttp's public `TCPConnector(socket_factory=...)` (`worker.api.aclient`).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import aiohttp
from celery.worker import state
from kombu.transport import virtual

from . import kombu_patches

STATE_NAMES = ("active_requests", "reserved_requests", "scheduled_requests", "requests")


def missing() -> list[str]:
    """What is not there, one entry per internal."""
    gone = [f"celery.worker.state.{name}" for name in STATE_NAMES if not hasattr(state, name)]
    if not kombu_patches.settle_patch_fits():
        gone.append("kombu.transport.redis.QoS (restore_unacked, restore_by_tag, ack, reject)")
    if not kombu_patches.client_reuse_fits():
        gone.append("kombu.transport.redis.Channel._create_client / pool")
    if not hasattr(virtual.Channel, "qos"):
        gone.append("kombu.transport.virtual.Channel.qos")
    if "socket_factory" not in inspect.signature(aiohttp.TCPConnector).parameters:
        gone.append("aiohttp.TCPConnector(socket_factory=...)")
    return gone


def versions() -> str:
    return ", ".join(f"{name} {version(name)}" for name in ("celery", "kombu", "aiohttp"))


def require() -> None:
    """Stop the worker (one line, a non-zero exit) when an internal it relies on is gone."""
    gone = missing()
    if gone:
        # SystemExit, not an Exception: nothing on the way up mistakes it for a bad job.
        raise SystemExit(
            f"voicemail: {versions()}: missing {'; '.join(gone)}: this worker was "
            "written for celery and kombu 5.7 and aiohttp 3.12+; pin those or update it"
        )
