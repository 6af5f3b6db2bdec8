"""Fixtures of the publisher tests: a running publisher in a thread, its records stream, and a
TCP proxy that can swallow the broker's answers (private brokers, MQTT watches and the retained
clean-up come from gateway_devkit.fixtures). Every wait is bounded."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from gateway_common.entries import Record, encode
from gateway_common.lifecycle import StopSignal
from gateway_common.settings import load_settings
from gateway_common.streams import ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.servers import PrivateRedis
from gateway_publisher.main import run
from gateway_publisher.settings import PublisherSettings

WAIT_S = 10.0


# ------------------------------------------------------------------ publisher in a thread


@dataclass
class RunningPublisher:
    settings: PublisherSettings
    stop: StopSignal
    registry: CollectorRegistry
    thread: threading.Thread
    errors: list[BaseException]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "publisher did not stop in time"


@pytest.fixture
def start_publisher(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, stream_prefix: str, topic_root: str
) -> Iterator[Callable[..., RunningPublisher]]:
    running: list[RunningPublisher] = []

    def start(host: str, port: int, **env: Any) -> RunningPublisher:
        values: dict[str, Any] = {
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_STREAM_PREFIX": stream_prefix,
            "GATEWAY_TOPIC_ROOT": topic_root,
            "GATEWAY_MQTT_HOST": host,
            "GATEWAY_MQTT_PORT": port,
            "GATEWAY_MQTT_TLS": "false",
            "GATEWAY_MQTT_CLIENT_ID": f"test-pub-{uuid.uuid4().hex[:8]}",
            "GATEWAY_PROJECT_ID": "proj",
            "GATEWAY_EDGE_NODE_ID": "edge1",
            "GATEWAY_CONSUMER_NAME": "pub-test",
            "GATEWAY_BLOCK_MS": 200,
            "GATEWAY_RECONNECT_MIN_S": 1,
            "GATEWAY_RECONNECT_MAX_S": 1,
            "GATEWAY_BACKLOG_INTERVAL_MS": 200,
            "GATEWAY_SHUTDOWN_GRACE_MS": 500,
        }
        values.update({f"GATEWAY_{k.upper()}": v for k, v in env.items()})
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        settings = load_settings(PublisherSettings)
        stop = StopSignal()
        registry = CollectorRegistry()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                run(settings, stop, registry)
            except BaseException as exc:
                errors.append(exc)
                raise

        thread = threading.Thread(target=target, name="publisher", daemon=True)
        pub = RunningPublisher(settings, stop, registry, thread, errors)
        running.append(pub)
        thread.start()
        return pub

    yield start
    for pub in running:
        pub.halt()
        assert not pub.errors


# ------------------------------------------------------------------ records


@pytest.fixture
def records_stream(redis_client: Any, stream_prefix: str) -> RecordsStream:
    return RecordsStream(redis_client, StreamKeys(stream_prefix))


@pytest.fixture
def private_records(
    private_redis: Callable[..., PrivateRedis], stream_prefix: str
) -> Iterator[RecordsStream]:
    """The records stream of this test's prefix on a Redis of the test's own (AOF everysec, like
    the deployment), which `.server` stops and restarts."""
    server = private_redis()
    client = redis.Redis.from_url(server.url)
    yield RecordsStream(client, StreamKeys(stream_prefix), server)
    client.close()


class RecordsStream:
    def __init__(self, client: Any, keys: StreamKeys, server: PrivateRedis | None = None) -> None:
        self.client = client
        self.keys = keys
        self.server = server

    def add(self, record: Record) -> str:
        return self.add_raw(encode(record))

    def add_raw(self, data: bytes) -> str:
        entry_id = self.client.xadd(self.keys.records, {ENTRY_FIELD: data})
        return str(entry_id.decode())

    def outstanding(self) -> int:
        """Entries the publisher group has not acknowledged: pending + never delivered."""
        try:
            groups = self.client.xinfo_groups(self.keys.records)
        except Exception:
            return -1
        for group in groups:
            if group["name"] in (PUBLISHER_GROUP, PUBLISHER_GROUP.encode()):
                return int(group["pending"]) + int(group.get("lag") or 0)
        return -1

    def dead(self) -> list[bytes]:
        return [fields[ENTRY_FIELD] for _, fields in self.client.xrange(self.keys.dead)]


# ------------------------------------------------------------------ a TCP proxy that can
# swallow the broker's answers and cut connections


class _MqttPackets:
    """Splits one direction of an MQTT byte stream into packets: (type, flags) of each."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buf += data
        out = []
        while len(self._buf) >= 2:
            length, shift, pos = 0, 0, 1
            while True:
                if pos >= len(self._buf):
                    return out
                byte = self._buf[pos]
                length |= (byte & 0x7F) << shift
                shift += 7
                pos += 1
                if not byte & 0x80:
                    break
            if len(self._buf) < pos + length:
                return out
            out.append((self._buf[0] >> 4, self._buf[0] & 0x0F))
            del self._buf[: pos + length]
        return out


class _ProxiedConnection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.frozen = False
        self.packets = (_MqttPackets(), _MqttPackets())  # client -> broker, broker -> client
        self.unanswered = 0

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CuttableProxy:
    """Forwards 127.0.0.1:port to a broker; `freeze` drops everything the broker answers on the
    current connections (PUBACKs never reach the client), `cut` closes them, and `cut_on`
    closes any connection that sends the given bytes (a broker refusing a publish by closing
    the connection, as MQTT v5 allows)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[_ProxiedConnection] = []
        self._lock = threading.Lock()
        self._cut_on: bytes | None = None
        self._cut_reason: int | None = None
        self.cuts_on_marker = 0
        self.most_unanswered = 0
        """The most QoS 1 PUBLISH a client had sent and not yet received a PUBACK for."""
        self.answer_delay_s = 0.0
        """Holds the broker's answers back this long: a client that waits for a PUBACK before
        its next PUBLISH then shows it, whatever the threads' timing."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                return
            conn = _ProxiedConnection(client, upstream)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=self._pump, args=(conn, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, True), daemon=True).start()

    def _pump(self, conn: _ProxiedConnection, answers: bool) -> None:
        src, dst = (conn.upstream, conn.client) if answers else (conn.client, conn.upstream)
        try:
            while data := src.recv(65536):
                if answers and conn.frozen:
                    continue
                if not answers and self._cut_on is not None and self._cut_on in data:
                    self.cuts_on_marker += 1
                    if self._cut_reason is not None:  # MQTT v5 DISCONNECT with that reason code
                        conn.client.sendall(bytes((0xE0, 0x02, self._cut_reason, 0x00)))
                    break
                if answers and self.answer_delay_s:
                    time.sleep(
                        self.answer_delay_s
                    )  # what the client sends meanwhile, it sent unanswered
                self._count(conn, answers, data)
                dst.sendall(data)
        except OSError:
            pass
        conn.close()

    def freeze(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.frozen = True

    def _count(self, conn: _ProxiedConnection, answers: bool, data: bytes) -> None:
        with self._lock:
            for kind, flags in conn.packets[answers].feed(data):
                if not answers and kind == 3 and (flags >> 1) & 0x03 == 1:  # PUBLISH, QoS 1
                    conn.unanswered += 1
                    self.most_unanswered = max(self.most_unanswered, conn.unanswered)
                elif answers and kind == 4:  # PUBACK
                    conn.unanswered -= 1

    def cut_on(self, marker: bytes, reason_code: int | None = 0x87) -> None:
        """Close every connection that sends `marker`: with a DISCONNECT carrying `reason_code`
        (0x87 not authorized) as the broker's refusal, or bare (None), like a network loss."""
        self._cut_on, self._cut_reason = marker, reason_code

    def cut(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


@pytest.fixture
def proxy(broker: Any) -> Iterator[CuttableProxy]:
    p = CuttableProxy((broker.host, broker.port))
    yield p
    p.close()
