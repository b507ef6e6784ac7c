"""The kombu work-around (worker/queue/kombu_patches.py), exercised on kombu's own QoS class."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from kombu.transport import redis as kombu_redis

from worker.queue import kombu_patches


class _Channel:
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def conn_or_acquire(self, client: Any = None) -> Any:
        # What kombu's channel does once its connection is closed: it reaches for it.
        return self.connection.client.hostname


def _qos(connection: Any) -> Any:
    qos = kombu_redis.QoS.__new__(kombu_redis.QoS)
    qos.channel = _Channel(connection)  # type: ignore[assignment]  # a stand-in
    qos._delivered = OrderedDict({"tag-1": None})
    return qos


@pytest.fixture(autouse=True)
def patched() -> None:
    kombu_patches.install_settle_patch()


def test_settling_on_a_closed_channel_leaves_the_worker_alive() -> None:
    qos = _qos(connection=None)
    assert qos.ack("tag-1") is None
    assert qos.reject("tag-1") is None
    assert qos.restore_unacked() is None
    assert not qos._delivered


class _Closed:
    client = None  # kombu's Connection after it was closed


def test_restoring_through_a_closed_connection_leaves_the_worker_alive() -> None:
    qos = _qos(connection=_Closed())
    assert qos.restore_unacked() is None


class _Live:
    client = object()  # a live connection whose code fails for another reason


def test_other_attribute_errors_still_raise() -> None:
    qos = _qos(connection=_Live())
    with pytest.raises(AttributeError):
        qos.ack("tag-1")


def test_installing_twice_patches_once() -> None:
    ack = kombu_redis.QoS.ack
    kombu_patches.install_settle_patch()
    assert kombu_redis.QoS.ack is ack


def test_api_connections_reset_on_close() -> None:
    """worker/api/aclient.py gives aiohttp's public `socket_factory` a factory: every
    socket it opens carries SO_LINGER 0, so an abandoned request is never replayed."""
    import asyncio
    import socket
    import struct

    import aiohttp

    from worker.api.aclient import aborting_connector

    linger: list[bytes] = []

    async def probe() -> None:
        body_sent = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            # Headers now, the body only once the client looked at its socket.
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
            await writer.drain()
            await body_sent.wait()
            writer.write(b"{}")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with (
            server,
            aiohttp.ClientSession(connector=aborting_connector()) as session,
            session.get(f"http://127.0.0.1:{port}/") as response,
        ):
            sock = response.connection.transport.get_extra_info("socket")  # type: ignore[union-attr]
            linger.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
            body_sent.set()
            await response.read()

    asyncio.run(probe())
    assert struct.unpack("ii", linger[0]) == (1, 0)


def test_blocking_client_sockets_reset_on_close() -> None:
    from worker.api.client import PlusofonClient
    from worker.api.protocol import ABORT_ON_CLOSE
    from worker.core.settings import load_settings

    client = PlusofonClient(load_settings(PLUSOFON_API_URL="http://api.test"))
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert ABORT_ON_CLOSE in pool._socket_options
    client.close()


def test_a_kombu_channel_reuses_one_redis_client_per_pool(redis_url: str) -> None:
    """kombu 5.7 built a `redis.Redis` per command (about as costly as the round trip on
    redis-py 8); with `reuse_clients` a channel keeps one, and a new one with a new pool."""
    from kombu import Connection

    kombu_patches.reuse_clients()
    with Connection(redis_url) as conn:
        channel: Any = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        # The BRPOP client (kombu's own cached `client`) stays apart.
        assert channel._create_client(asynchronous=True) is not first
        with channel.conn_or_acquire() as client:
            assert client is first
            client.set("voicemail:test:compat", "1", ex=5)
        channel._disconnect_pools()  # what kombu does on a lost connection
        second = channel._create_client()
        assert second is not first
        assert second.get("voicemail:test:compat") == b"1"


def test_reusing_clients_is_installed_once() -> None:
    channel: Any = kombu_redis.Channel
    kombu_patches.reuse_clients()
    create = channel._create_client
    kombu_patches.reuse_clients()
    assert channel._create_client is create
    assert kombu_patches.client_reuse_fits()


def test_a_missing_internal_fails_the_start_up_check_naming_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 12: `scheduled_requests` was read by the lease thread unchecked; gone, every
    tick would fail inside a catch-all and no heartbeat, lease or sweep would run."""
    from importlib.metadata import version

    from celery.worker import state

    from worker.queue import internals

    monkeypatch.delattr(state, "scheduled_requests")
    with pytest.raises(SystemExit) as stopped:
        internals.require()
    line = str(stopped.value.code)
    assert f"celery {version('celery')}" in line and "scheduled_requests" in line
    assert "\n" not in line


WITHOUT_SCHEDULED_REQUESTS = """
import sys
import celery.bin.celery  # Celery's own modules read it at import: take it away after
from celery.worker import state
del state.scheduled_requests
sys.argv = ["celery", "-A", "worker", "worker", "--pool", "solo"]
from celery.__main__ import main
main()
"""


def test_a_worker_without_an_internal_stops_at_start_in_one_line() -> None:
    import os
    import subprocess
    import sys
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SCHEDULED_REQUESTS],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"celery {version('celery')}" in lines[0] and "scheduled_requests" in lines[0]
