"""The size of a QoS 1 PUBLISH, as the broker counts it against its Maximum Packet Size."""

from __future__ import annotations

import queue

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway_publisher.mqtt_link import publish_packet_size


@pytest.mark.parametrize(
    ("topic", "payload_size", "expected"),
    [
        ("t", 0, 1 + 1 + 6),
        ("t", 121, 1 + 1 + 127),  # the largest remaining length in one byte
        ("t", 122, 1 + 2 + 128),  # one more: two length bytes
        ("mqtts/P/DDATA/edge/B57", 1295, 1 + 2 + 2 + 22 + 2 + 1 + 1295),
        ("é", 3, 1 + 1 + 2 + 2 + 2 + 1 + 3),  # the topic counts in UTF-8 bytes
    ],
)
def test_publish_packet_size(topic: str, payload_size: int, expected: int) -> None:
    assert publish_packet_size(topic, b"x" * payload_size) == expected


@pytest.mark.integration
def test_the_broker_counts_it_the_same(private_broker) -> None:
    """A packet exactly at the broker's maximum goes through; a larger one and the broker closes
    the connection (what the publisher avoids by dead-lettering such a record). Mosquitto leaves
    the remaining-length bytes out of its count, so "larger" is by more than those (2 here)."""
    maximum = 300
    mosq = private_broker(f"max_packet_size {maximum}")
    topic = "mqtts/P/DDATA/edge/ABCD"
    at_limit = next(
        b"y" * n for n in range(maximum) if publish_packet_size(topic, b"y" * n) == maximum
    )
    events: queue.Queue[str] = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_connect = lambda *_args: events.put("connected")
    client.on_publish = lambda _c, _u, _mid, code, _p: events.put(
        "accepted" if code.value < 0x80 else f"refused {code.value}"
    )
    client.on_disconnect = lambda *_args: events.put("disconnected")
    client.connect("127.0.0.1", mosq.port)
    client.loop_start()
    try:
        assert events.get(timeout=5) == "connected"
        client.publish(topic, at_limit, qos=1)
        assert events.get(timeout=5) == "accepted"
        client.publish(topic, at_limit + b"yyy", qos=1)
        assert events.get(timeout=5) == "disconnected"
    finally:
        client.loop_stop()
