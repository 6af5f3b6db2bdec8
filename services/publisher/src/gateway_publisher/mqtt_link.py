"""The MQTT v5 session with the broker: the only module that touches paho-mqtt.

paho is driven from the publisher's own thread, not from a network thread of its own: a
publish is written to the socket at once, and the broker's answers are read whenever the
publisher waits for them (`next_event`, `wait_connected`: `select` on paho's socket, then
paho's `loop_read` / `loop_write` / `loop_misc`). One thread means no hand-off between threads
per message, and no lock. The link reconnects by itself, with a capped exponential delay, when
the publisher waits for a connection. paho's callbacks become events the publisher consumes in
order: the outcome of each QoS 1 publish (from the PUBACK reason code) and the loss of the
connection. Each successful connection gets a new generation number, so the publisher knows
when it must send DBIRTHs again and republish what was in flight.

Whoever holds a link must call `next_event` or `wait_connected` at least every `max_idle_s`,
so that keep-alive pings go out in time and a silent link is found in time.

A link that goes silent without closing (a NAT or a 4G router that dropped its state: the
connection is dead, but no FIN or RST ever comes) is given up once nothing has arrived from
the broker for 1.5 x the keep-alive (the bound MQTT sets the broker for its clients), and the
link reconnects. paho alone may take up to twice the keep-alive: after a keep-alive without
bytes it sends a PINGREQ and restarts its own timers, then waits another whole keep-alive for
the PINGRESP (a ping it sent just before the silence began gives it up sooner). The link notes
when bytes arrive (each `loop_read` its select asked for) and, at the limit, shuts the socket
down: paho reads the end of the stream and reports the connection lost through its ordinary
path (public API only). The limit is never less than half a keep-alive
after the pass that let paho send its ping, so a holder that came back late (a blocking Redis
call) does not take a link for dead before a ping could be answered.

With the downlink on, the link subscribes (QoS 1) to the commands' topic filter on every new
connection, and each message that arrives becomes an event too (`Incoming`). Its PUBACK is
sent only when the publisher says the command is stored (`ack`), so a message the publisher
could not store yet (Redis away) is not acknowledged to the broker.

Two paho behaviours are deliberately bypassed:
- `MQTTMessageInfo.wait_for_publish` / `is_published` report a message the broker refused as
  published, so the PUBACK reason code is read in `on_publish` instead;
- paho keeps unacknowledged messages in memory and resends them on reconnect; they are dropped
  on each new connection instead, because the records they carry are still pending in Redis
  and the publisher republishes them itself, in order, after the DBIRTHs.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway_common.backoff import Backoff
from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "SILENCE_LIMIT",
    "ConnectionLost",
    "Incoming",
    "LinkEvent",
    "MqttConfig",
    "MqttLink",
    "PublishOutcome",
    "publish_packet_size",
]

log = get_logger(__name__)

#: MQTT v5 reason codes below this value mean success (0x10 "no matching subscribers" too).
_FIRST_FAILURE_CODE = 0x80
#: DISCONNECT reason codes by which a broker refuses what the client sent (MQTT v5 §3.14.2.1):
#: unspecified, malformed packet, protocol error, implementation specific, not authorized,
#: topic name invalid, receive maximum exceeded, packet too large, payload format invalid,
#: retain not supported, QoS not supported. Not: server shutting down or busy, session taken
#: over, keep-alive timeout, message rate or quota exceeded (nothing wrong with a message).
_REFUSALS = frozenset({0x80, 0x81, 0x82, 0x83, 0x87, 0x90, 0x93, 0x95, 0x99, 0x9A, 0x9B})
#: How long `close` keeps trying to write the DISCONNECT.
_CLOSE_TIMEOUT_S = 1.0
#: Keep-alives without a byte from the broker after which the link is dead (MQTT v5 §3.1.2.10
#: gives the broker the same bound for its clients).
SILENCE_LIMIT = 1.5
#: Keep-alives a PINGREQ may wait for its answer before the link is dead.
_PING_ANSWER = SILENCE_LIMIT - 1.0


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
    subscriptions: tuple[str, ...] = ()
    """Topic filters subscribed to (QoS 1) on every connection: the DCMD filter, or none."""


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
    refusal: bool = False
    """The broker closed the connection with a DISCONNECT whose reason code refuses what the
    client sent (not authorized, packet too large, ...), not for a reason of its own (shutting
    down, session taken over, too busy) and not by a bare close (a network loss looks alike)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message that arrived on a subscription (QoS 1: `ack(mid)` once it is handled)."""

    generation: int
    mid: int
    topic: str
    payload: bytes
    qos: int


LinkEvent = PublishOutcome | ConnectionLost | Incoming


def publish_packet_size(topic: str, payload: bytes) -> int:
    """Bytes of the MQTT v5 PUBLISH (QoS 1, no properties) that carries `payload` on `topic`."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + len(payload)  # topic, packet id, properties
    length_bytes = 1
    while remaining >= 128**length_bytes:
        length_bytes += 1
    return 1 + length_bytes + remaining


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
        self._events: deque[LinkEvent] = deque()
        self._generation = 0
        self._receive_maximum: int | None = None
        self._maximum_packet_size: int | None = None
        self._connected = False
        self._started = False
        self._backoff = Backoff(
            initial_s=config.reconnect_min_s, max_s=config.reconnect_max_s, jitter=0.0
        )
        self._next_attempt = 0.0
        """time.monotonic() of the next connection attempt, while there is no socket."""
        self._heard_at = 0.0
        """time.monotonic() when bytes last arrived on the socket (or it was opened)."""
        self._pinged_by: float | None = None
        """The first pass at least a keep-alive after `_heard_at`: paho has sent its PINGREQ by
        then (or given the connection up itself)."""
        self._silent_reason: str | None = None
        """Why the link is being given up for silent, until paho reports the disconnection."""
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=paho.MQTTv5
        )
        if config.tls:
            client.tls_set_context(tls_context(config))
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.max_inflight_messages_set(config.max_inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.manual_ack_set(on=True)
        self._client = client

    @property
    def connected(self) -> bool:
        """True while the current connection is up (its CONNACK was a success)."""
        return self._connected

    @property
    def generation(self) -> int:
        """Number of the current (or last) successful connection; 0 before the first."""
        return self._generation

    @property
    def receive_maximum(self) -> int | None:
        """The broker's Receive Maximum from CONNACK: QoS 1 messages it accepts in flight."""
        return self._receive_maximum

    def too_large(self, topic: str, payload: bytes) -> str | None:
        """Why the broker would not take this PUBLISH (larger than the Maximum Packet Size its
        CONNACK announced: it would close the connection on it), or None."""
        maximum = self._maximum_packet_size
        if maximum is None:
            return None
        size = publish_packet_size(topic, payload)
        if size <= maximum:
            return None
        return f"{size} bytes, above the broker's maximum packet size of {maximum}"

    @property
    def max_idle_s(self) -> float:
        """The longest the holder may go without calling `next_event` or `wait_connected`.

        paho pings once the link has been silent for the keep-alive; the broker waits 1.5 times
        the keep-alive: a quarter of it late still leaves a margin. Less when the link's own next
        check (its ping, or the end of its silence limit) comes sooner; 0 when it is due.
        """
        quarter = self._config.keepalive_s / 4
        if self._client.socket() is None:
            return quarter
        return max(0.0, min(quarter, self._next_check() - time.monotonic()))

    def start(self) -> None:
        """Connect at the first `wait_connected`; the link keeps reconnecting until `close`."""
        self._client.connect_async(
            self._config.host, self._config.port, keepalive=self._config.keepalive_s
        )
        self._started = True
        self._next_attempt = 0.0

    def close(self) -> None:
        """Send DISCONNECT (written at once when the socket takes it) and close the socket."""
        self._started = False
        if self._client.socket() is not None:
            self._client.disconnect()
            self._run_until(lambda: self._client.socket() is None, _CLOSE_TIMEOUT_S)
        self._connected = False

    def wait_connected(self, timeout_s: float) -> bool:
        """Connect (or reconnect, when the delay is over) and wait up to `timeout_s` for it."""
        self._run_until(lambda: self._connected, timeout_s, connect=True)
        return self._connected

    def next_event(self, timeout_s: float | None) -> LinkEvent | None:
        """The next event; waits up to `timeout_s` (0: do not wait, None: up to `max_idle_s`)."""
        if not self._events:
            wait_s = self.max_idle_s if timeout_s is None else timeout_s
            self._run_until(lambda: bool(self._events), wait_s)
        return self._events.popleft() if self._events else None

    def publish(self, topic: str, payload: bytes, *, retain: bool, generation: int) -> int | None:
        """Publish at QoS 1 on connection `generation`; the mid, or None if that connection is gone.

        Nothing is handed to paho unless that very connection is up, so no message waits in
        paho's memory. The outcome arrives later as a `PublishOutcome` with the same mid.
        """
        if not self._connected or generation != self._generation:
            return None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Left in paho's memory at most until the next connection drops it.
            return None
        return info.mid

    def ack(self, incoming: Incoming) -> None:
        """Acknowledge a message that arrived (PUBACK), if its connection is still up."""
        if incoming.qos and self._connected and incoming.generation == self._generation:
            self._client.ack(incoming.mid, incoming.qos)

    # ---- driving paho

    def _run_until(
        self, done: Callable[[], bool], timeout_s: float, *, connect: bool = False
    ) -> None:
        """Do the network work until `done()` or `timeout_s` passed; at least one pass."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            self._service(max(0.0, deadline - time.monotonic()), connect=connect)
            if done() or time.monotonic() >= deadline:
                return

    def _service(self, timeout_s: float, *, connect: bool) -> None:
        """Read, write and keep alive for up to `timeout_s`; `connect` when it is time to.

        A lost connection shows as paho's socket gone and `_on_disconnect` called, whichever
        of paho's calls found it; paho's return codes add nothing to that.
        """
        client = self._client
        sock = client.socket()
        if sock is None:
            wait_s = self._next_attempt - time.monotonic()
            if not (connect and self._started) or wait_s > 0:
                time.sleep(min(max(wait_s, 0.0), timeout_s))  # the reconnection delay, bounded
            else:
                self._connect()
            return
        # TLS may hold decrypted bytes that select() cannot see.
        pending = getattr(sock, "pending", None)
        buffered = pending is not None and pending() > 0
        wlist = [sock] if client.want_write() else []
        wait_s = min(timeout_s, max(0.0, self._next_check() - time.monotonic()))
        readable, writable, _ = select.select([sock], wlist, [], 0.0 if buffered else wait_s)
        if readable or buffered:
            client.loop_read()
            # Noted after paho's read, so never before paho's own note of it: when this says
            # a keep-alive has passed, paho's check in loop_misc says so too.
            self._heard_at = time.monotonic()
            self._pinged_by = None
        if writable and client.socket() is not None:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()
        if client.socket() is not None:
            self._check_silence()

    def _next_check(self) -> float:
        """time.monotonic() when the silence of the link must be looked at next: a keep-alive
        after the last bytes (paho pings then), or the end of the silence limit."""
        if self._pinged_by is None:
            return self._heard_at + self._config.keepalive_s
        return self._silence_limit(self._pinged_by)

    def _silence_limit(self, pinged_by: float) -> float:
        keepalive = self._config.keepalive_s
        return max(self._heard_at + SILENCE_LIMIT * keepalive, pinged_by + _PING_ANSWER * keepalive)

    def _check_silence(self) -> None:
        """Give the connection up when the broker has been silent past the limit."""
        now = time.monotonic()
        if self._pinged_by is None:
            if now < self._heard_at + self._config.keepalive_s:
                return
            self._pinged_by = now  # paho's loop_misc has just pinged (or did before)
        if now < self._silence_limit(self._pinged_by):
            return
        silent_s = now - self._heard_at
        sock = self._client.socket()
        if sock is None:
            return
        log.warning(
            "mqtt_link_silent",
            silent_s=round(silent_s, 2),
            keepalive_s=self._config.keepalive_s,
            generation=self._generation,
            connected=self._connected,
        )
        self._silent_reason = (
            f"nothing from the broker for {silent_s:.1f} s "
            f"(keep-alive {self._config.keepalive_s} s)"
        )
        if isinstance(sock, socket.socket):  # TCP, or TLS over it: the transports configured
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # paho reads the end of the stream: the connection is lost, on_disconnect says so.
        self._client.loop_read()

    def _connect(self) -> None:
        log.debug("mqtt_connecting", host=self._config.host, port=self._config.port)
        try:
            self._client.reconnect()  # a blocking TCP (and TLS) connect, then CONNECT
        except OSError as exc:
            log.warning(
                "mqtt_connect_failed",
                host=self._config.host,
                port=self._config.port,
                error=str(exc),
            )
            self._schedule_reconnect()
            return
        self._heard_at = time.monotonic()  # the CONNACK is due within the keep-alive
        self._pinged_by = None

    def _schedule_reconnect(self) -> None:
        self._next_attempt = time.monotonic() + self._backoff.next_delay()

    # ---- paho callbacks (called from inside loop_read / loop_write / loop_misc)

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
        dropped = client.drop_out_messages()
        self._generation += 1
        self._receive_maximum = getattr(properties, "ReceiveMaximum", None)
        self._maximum_packet_size = getattr(properties, "MaximumPacketSize", None)
        self._connected = True
        self._backoff.reset()
        log.info(
            "mqtt_connected",
            host=self._config.host,
            port=self._config.port,
            generation=self._generation,
            session_present=flags.session_present,
            receive_maximum=self._receive_maximum,
            maximum_packet_size=self._maximum_packet_size,
            dropped_messages=len(dropped),
        )
        if self._config.subscriptions:
            client.subscribe([(topic, 1) for topic in self._config.subscriptions])
            log.info("mqtt_subscribed", topics=list(self._config.subscriptions))

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        silent, self._silent_reason = self._silent_reason, None
        if self._started:
            self._schedule_reconnect()
        if was_connected:
            emit = log.warning if reason_code.is_failure or silent else log.info
            from_broker = flags.is_disconnect_packet_from_server
            refusal = from_broker and int(reason_code.value) in _REFUSALS
            reason = silent or str(reason_code)
            emit(
                "mqtt_disconnected",
                generation=self._generation,
                reason=reason,
                by_broker=from_broker,
            )
            self._events.append(ConnectionLost(self._generation, reason, refusal))

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # not a topic MQTT allows: refused as a foreign topic
            topic = "<not UTF-8>"
        self._events.append(
            Incoming(self._generation, message.mid, topic, bytes(message.payload), message.qos)
        )

    def _on_publish(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._events.append(
            PublishOutcome(self._generation, mid, int(reason_code.value), str(reason_code))
        )
