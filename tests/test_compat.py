"""The kombu work-around (worker/queue/compat.py), exercised on kombu's own QoS class."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from kombu.transport import redis as kombu_redis

from worker.queue import compat


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
    compat.install()


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
    compat.install()
    assert kombu_redis.QoS.ack is ack
