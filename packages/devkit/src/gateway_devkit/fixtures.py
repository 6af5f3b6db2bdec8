"""The test kit as pytest fixtures, for every suite (the root conftest.py names this module in
`pytest_plugins`).

The shared Redis and Mosquitto on loopback come from the environment (GATEWAY_TEST_REDIS_URL,
GATEWAY_TEST_MQTT_HOST, GATEWAY_TEST_MQTT_PORT; loopback defaults). Each test gets its own
stream prefix and MQTT topic root, so tests never see each other's data; the prefix's keys are
deleted afterwards. Private servers, MQTT watches and modem lines are stopped or closed when the
test ends.
"""

from __future__ import annotations

import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import pytest
import redis

from gateway_devkit.modem_line import ModemLine
from gateway_devkit.mqtt_watch import MqttWatch
from gateway_devkit.servers import PrivateBroker, PrivateRedis, find_binary

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

__all__ = ["Broker"]

S = TypeVar("S", PrivateRedis, PrivateBroker)


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


# ------------------------------------------------------------------ the shared servers


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def broker() -> Broker:
    return Broker(
        os.environ.get("GATEWAY_TEST_MQTT_HOST", "127.0.0.1"),
        int(os.environ.get("GATEWAY_TEST_MQTT_PORT", "1883")),
    )


@pytest.fixture
def stream_prefix(redis_url: str) -> Iterator[str]:
    """A stream prefix of this test's own; its keys are removed when the test ends."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def topic_root() -> str:
    """An MQTT topic root of this test's own, used instead of `mqtts`."""
    return f"test-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ private servers


class _Servers:
    """The private servers of one test, each in a directory of its own; killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._made: list[PrivateRedis | PrivateBroker] = []

    def add(self, binary: str, build: Callable[[Path], S], start: bool) -> S:
        """`build(directory)`, started unless `start` is false; skips the test if `binary` is
        not installed."""
        if find_binary(binary) is None:
            pytest.skip(f"{binary} is not installed")
        directory, n = self._tmp_path / binary, 1
        while directory.exists():  # a second server of the kind
            n += 1
            directory = self._tmp_path / f"{binary}-{n}"
        server = build(directory)
        self._made.append(server)
        if start:
            server.start()
        return server

    def kill_all(self) -> None:
        for server in self._made:
            server.stop(signal.SIGKILL)


@pytest.fixture
def _private_servers(tmp_path: Path) -> Iterator[_Servers]:
    servers = _Servers(tmp_path)
    yield servers
    servers.kill_all()


@pytest.fixture
def private_redis(_private_servers: _Servers) -> Callable[..., PrivateRedis]:
    """`private_redis(appendfsync="everysec", start=True, extra_args=())`: a redis-server of
    the test's own (see PrivateRedis), killed when the test ends. Skips the test if it is not
    installed."""

    def make(
        appendfsync: Literal["always", "everysec"] | None = "everysec",
        *,
        start: bool = True,
        extra_args: Sequence[str] = (),
    ) -> PrivateRedis:
        build = functools.partial(PrivateRedis, appendfsync=appendfsync, extra_args=extra_args)
        return _private_servers.add("redis-server", build, start)

    return make


@pytest.fixture
def private_broker(_private_servers: _Servers) -> Callable[..., PrivateBroker]:
    """`private_broker(extra_config="", persistence=True, start=True)`: a Mosquitto of the
    test's own (see PrivateBroker), killed when the test ends. Skips the test if it is not
    installed."""

    def make(
        extra_config: str = "", *, persistence: bool = True, start: bool = True
    ) -> PrivateBroker:
        build = functools.partial(PrivateBroker, persistence=persistence, extra_config=extra_config)
        return _private_servers.add("mosquitto", build, start)

    return make


# ------------------------------------------------------------------ MQTT


@pytest.fixture
def subscriber() -> Iterator[Callable[..., MqttWatch]]:
    """`subscriber(host, port, topic_filter, session_expiry_s=None, client_id=None)`: an
    MqttWatch, closed when the test ends after clearing the retained DBIRTHs it saw."""
    made: list[MqttWatch] = []

    def make(
        host: str,
        port: int,
        topic_filter: str,
        *,
        session_expiry_s: int | None = None,
        client_id: str | None = None,
    ) -> MqttWatch:
        watch = MqttWatch(
            host, port, topic_filter, session_expiry_s=session_expiry_s, client_id=client_id
        )
        made.append(watch)
        return watch

    yield make
    for watch in made:
        watch.clear_retained()
        watch.close()


@pytest.fixture
def clear_retained(broker: Broker, topic_root: str) -> Iterator[None]:
    """After the test, remove the retained messages left under this test's topic root."""
    yield
    watch = MqttWatch(broker.host, broker.port, f"{topic_root}/#")
    time.sleep(0.3)  # the retained messages come right after the subscription
    watch.clear_retained({m.topic for m in watch.snapshot() if m.retain})
    watch.close()


# ------------------------------------------------------------------ the serial line


@pytest.fixture
def modem_line() -> Iterator[ModemLine]:
    """A pty pair: the test writes the modem's bytes, ingest opens `modem_line.path`."""
    line = ModemLine()
    yield line
    line.close()
