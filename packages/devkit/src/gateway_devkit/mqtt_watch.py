"""An MQTT v5 subscriber that records every message under a topic filter, in arrival order (the
one paho client of the tests and the demo; the bench's is `mosquitto_sub`, outside its
process).

With a session expiry it keeps a persistent session (clean start off): across a broker restart
it reconnects and receives what the broker queued for it meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway_devkit.processes import START_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["MqttWatch", "Received"]


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    dup: bool
    """The broker redelivered it to this subscriber (MQTT DUP flag)."""
    at: float
    """time.time() at arrival."""
    monotonic: float
    """time.monotonic() at arrival."""

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttWatch:
    """Subscribes to `topic_filter` (QoS 1) and records what arrives; connected and subscribed
    when the constructor returns (OSError if the broker cannot be reached, TimeoutError if it
    does not acknowledge the subscription).

    `take` hands the messages out in order, each once; `wait_for` and `snapshot` look at all of
    them. With `keep=False`, messages handed out by `take` are forgotten (a long-running demo).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str,
        *,
        client_id: str | None = None,
        session_expiry_s: int | None = None,
        keepalive_s: int = 60,
        keep: bool = True,
    ) -> None:
        self.topic_filter = topic_filter
        self.connections: list[bool] = []
        """session_present of each CONNACK."""
        self._messages: list[Received] = []
        self._taken = 0
        self._keep = keep
        self._closed = False
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"watch-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_args: self._subscribed.set()
        client.on_message = self._on_message
        self._client = client
        properties = None
        if session_expiry_s is not None:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = session_expiry_s
        client.connect(
            host,
            port,
            keepalive=keepalive_s,
            clean_start=session_expiry_s is None,
            properties=properties,
        )
        client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise TimeoutError(
                f"{host}:{port} did not acknowledge a subscription to {topic_filter}"
            )

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, _rc: object, _p: object
    ) -> None:
        with self._arrived:
            self.connections.append(flags.session_present)
        if flags.session_present:
            self._subscribed.set()  # the broker kept the subscription
        else:
            client.subscribe(self.topic_filter, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received = Received(
            msg.topic,
            bytes(msg.payload),
            bool(msg.retain),
            bool(msg.dup),
            time.time(),
            time.monotonic(),
        )
        with self._arrived:
            self._messages.append(received)
            self._arrived.notify_all()

    def snapshot(self) -> list[Received]:
        with self._arrived:
            return list(self._messages)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout_s: float
    ) -> list[Received]:
        """Every message so far, once `predicate` holds for them or `timeout_s` passed."""
        with self._arrived:
            self._arrived.wait_for(lambda: predicate(self._messages), timeout=timeout_s)
            return list(self._messages)

    def take(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """The next `count` messages not handed out yet, or fewer if they did not come in
        time."""
        with self._arrived:
            self._arrived.wait_for(
                lambda: len(self._messages) - self._taken >= count, timeout=timeout_s
            )
            got = self._messages[self._taken : self._taken + count]
            self._taken += len(got)
            if not self._keep:
                del self._messages[: self._taken]
                self._taken = 0
            return got

    def quiet(self, timeout_s: float = 0.3) -> list[Received]:
        """Whatever else arrives within `timeout_s` (expected: nothing)."""
        return self.take(1_000_000, timeout_s)

    def clear_retained(self, topics: Iterable[str] | None = None) -> None:
        """Remove from the broker the retained messages on `topics`; by default on the topics
        seen retained or carrying a DBIRTH (the publisher retains them, and a live subscriber
        receives them without the flag)."""
        if self._closed:
            return
        if topics is None:
            topics = {m.topic for m in self.snapshot() if m.retain or "/DBIRTH/" in m.topic}
        for topic in sorted(topics):
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more
                self._client.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout=2)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()
