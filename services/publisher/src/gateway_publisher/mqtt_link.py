"""The MQTT v5 session with the broker: the only module that touches paho-mqtt.

paho runs its network loop in its own thread and reconnects by itself with a capped
exponential delay. This module turns its callbacks into events the publisher consumes from one
queue: the outcome of each QoS 1 publish (from the PUBACK reason code) and the loss of the
connection. Each successful connection gets a new generation number, so the publisher knows
when it must send DBIRTHs again and republish what was in flight.

Two paho behaviours are deliberately bypassed:
- `MQTTMessageInfo.wait_for_publish` / `is_published` report a message the broker refused as
  published, so the PUBACK reason code is read in `on_publish` instead;
- paho keeps unacknowledged messages in memory and resends them on reconnect; they are dropped
  on each new connection instead, because the records they carry are still pending in Redis
  and the publisher republishes them itself, in order, after the DBIRTHs.
"""

from __future__ import annotations

import queue
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from pathlib import Path

    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["ConnectionLost", "LinkEvent", "MqttConfig", "MqttLink", "PublishOutcome"]

log = get_logger(__name__)

#: MQTT v5 reason codes below this value mean success (0x10 "no matching subscribers" too).
_FIRST_FAILURE_CODE = 0x80


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    client_id: str
    tls: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 60
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    max_inflight: int = 64


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """The broker's answer (PUBACK) to one QoS 1 publish."""

    generation: int
    mid: int
    reason_code: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.reason_code < _FIRST_FAILURE_CODE


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    generation: int
    reason: str


LinkEvent = PublishOutcome | ConnectionLost


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """TLS 1.2 or later, server certificate checked against the CA and the host name."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(config.ca_file) if config.ca_file else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if config.cert_file is not None:
        context.load_cert_chain(
            str(config.cert_file), str(config.key_file) if config.key_file else None
        )
    return context


class MqttLink:
    def __init__(self, config: MqttConfig) -> None:
        self._config = config
        self._events: queue.Queue[LinkEvent] = queue.Queue()
        self._lock = threading.Lock()
        self._generation = 0
        self._receive_maximum: int | None = None
        self.connected = threading.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=paho.MQTTv5
        )
        if config.tls:
            client.tls_set_context(tls_context(config))
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        client.max_inflight_messages_set(config.max_inflight)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    @property
    def generation(self) -> int:
        """Number of the current (or last) successful connection; 0 before the first."""
        return self._generation

    @property
    def receive_maximum(self) -> int | None:
        """The broker's Receive Maximum from CONNACK: QoS 1 messages it accepts in flight."""
        return self._receive_maximum

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until `close`."""
        self._client.connect_async(
            self._config.host, self._config.port, keepalive=self._config.keepalive_s
        )
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def next_event(self, timeout_s: float | None) -> LinkEvent | None:
        """The next event; waits up to `timeout_s` (0: do not wait)."""
        try:
            if timeout_s is not None and timeout_s <= 0:
                return self._events.get_nowait()
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def publish(self, topic: str, payload: bytes, *, retain: bool, generation: int) -> int | None:
        """Publish at QoS 1 on connection `generation`; the mid, or None if that connection is gone.

        Nothing is handed to paho unless that very connection is up, so no message waits in
        paho's memory. The outcome arrives later as a `PublishOutcome` with the same mid.
        """
        with self._lock:
            if not self.connected.is_set() or generation != self._generation:
                return None
            info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Left in paho's memory at most until the next connection drops it.
            return None
        return info.mid

    # ---- paho callbacks (paho's network thread)

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "mqtt_connect_refused",
                host=self._config.host,
                port=self._config.port,
                reason=str(reason_code),
                code=reason_code.value,
            )
            return
        with self._lock:
            dropped = client.drop_out_messages()
            self._generation += 1
            self._receive_maximum = getattr(properties, "ReceiveMaximum", None)
            self.connected.set()
        log.info(
            "mqtt_connected",
            host=self._config.host,
            port=self._config.port,
            generation=self._generation,
            session_present=flags.session_present,
            receive_maximum=self._receive_maximum,
            dropped_messages=len(dropped),
        )

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        log.warning("mqtt_connect_failed", host=self._config.host, port=self._config.port)

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected:
            emit = log.warning if reason_code.is_failure else log.info
            emit("mqtt_disconnected", generation=self._generation, reason=str(reason_code))
            self._events.put(ConnectionLost(self._generation, str(reason_code)))

    def _on_publish(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties,
    ) -> None:
        # No lock here: paho holds its message mutex while calling this.
        self._events.put(
            PublishOutcome(self._generation, mid, int(reason_code.value), str(reason_code))
        )
