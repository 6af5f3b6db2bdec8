"""A broker link that goes silent without closing (a NAT or a 4G router that dropped its state)
is given up within 1.5 x the keep-alive of the last bytes received, and the publisher goes on
over a new connection; a slow broker that still answers keeps its link (real Redis and
Mosquitto on loopback, the dev kit's TCP proxy between the publisher and the broker)."""

from __future__ import annotations

import time
import uuid

import pytest

from gateway_devkit.polling import wait_until
from gateway_devkit.tcp_proxy import Mode, TcpProxy
from gateway_publisher.mqtt_link import MqttConfig, MqttLink

from .test_integration import T0, energy, expected, seen

pytestmark = pytest.mark.integration

KEEPALIVE_S = 5
#: Scheduling on a loaded machine: the check itself wakes up at the limit.
MARGIN_S = 0.5


@pytest.fixture
def proxy(broker):
    with TcpProxy(broker.host, broker.port) as p:
        yield p


def test_a_silent_link_is_given_up_within_one_and_a_half_keepalives(
    broker, proxy, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first, during = energy("S1", T0), energy("S1", T0 + 1, base=2000)
    records_stream.add(first)
    pub = start_publisher(proxy.host, proxy.port, keepalive_s=KEEPALIVE_S)
    assert seen(live.take(2)) == expected(topic_root, [("S1", None), ("S1", first)])
    assert wait_until(lambda: records_stream.outstanding() == 0)

    proxy.blackhole_existing()  # the old connection is dead for good, a new one works
    records_stream.add(during)  # published into the void: no PUBACK
    limit_s = 1.5 * KEEPALIVE_S
    assert wait_until(lambda: proxy.connections()[0].client_closed_at, limit_s + 5), (
        "the publisher never gave up the silent connection"
    )
    dead = proxy.connections()[0]
    # Dead, or closed once the broker too gave up on a client it no longer heard (its 1.5 x
    # keep-alive); the proxy told neither side of the other's close.
    assert dead.mode in (Mode.DEAD, Mode.CLOSED)
    assert dead.last_down_at is not None
    assert dead.client_closed_at is not None
    silent_s = dead.client_closed_at - dead.last_down_at
    # Not before a keep-alive ping could have been answered, not after 1.5 x the keep-alive.
    assert KEEPALIVE_S <= silent_s <= limit_s + MARGIN_S, silent_s

    # A new connection: a DBIRTH again, then the record that was in flight.
    want = expected(topic_root, [("S1", None), ("S1", during)])
    assert seen(live.take(2, timeout_s=10)) == want
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert len(proxy.connections()) == 2
    assert pub.metric("gateway_mqtt_connected") == 1


def test_a_slow_broker_that_answers_keeps_its_link(
    broker, proxy, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    """Every answer of the broker 0.4 x the keep-alive late: the keep-alive pings are answered
    within the limit, so the link is never taken for dead while the publisher is idle."""
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first, later = energy("S2", T0), energy("S2", T0 + 30, base=3000)
    records_stream.add(first)
    pub = start_publisher(proxy.host, proxy.port, keepalive_s=KEEPALIVE_S)
    assert seen(live.take(2)) == expected(topic_root, [("S2", None), ("S2", first)])
    assert wait_until(lambda: records_stream.outstanding() == 0)
    proxy.delay_downstream(0.4 * KEEPALIVE_S)
    # Idle for 2.5 keep-alives: two pings, each answered late.
    assert not wait_until(lambda: len(proxy.connections()) > 1, 2.5 * KEEPALIVE_S)
    records_stream.add(later)
    assert seen(live.take(1)) == expected(topic_root, [("S2", later)])  # no new DBIRTH
    assert wait_until(lambda: records_stream.outstanding() == 0, 10)
    (only,) = proxy.connections()
    assert only.mode is Mode.FORWARD
    # The broker's round trip, per message: the DBIRTH and the first DDATA at once, the last
    # DDATA 2 s late.
    puback = "gateway_mqtt_puback_seconds"
    assert pub.metric(f"{puback}_count") == 3
    assert pub.metric(f"{puback}_bucket", {"le": "1.0"}) == 2
    assert pub.metric(f"{puback}_bucket", {"le": "2.5"}) == 3
    assert pub.metric(f"{puback}_sum") >= 0.4 * KEEPALIVE_S


def test_a_holder_back_late_gives_the_ping_time_to_be_answered(broker, proxy) -> None:
    """The holder of the link was away (a blocking Redis call) until after the keep-alive:
    paho pings only when it is back, so the ping's answer (0.4 x the keep-alive late) comes
    after 1.5 x the keep-alive from the last bytes. That is no reason to give the link up."""
    link = MqttLink(
        MqttConfig(
            host=proxy.host,
            port=proxy.port,
            client_id=f"silent-{uuid.uuid4().hex[:8]}",
            tls=False,
            keepalive_s=KEEPALIVE_S,
        )
    )
    link.start()
    try:
        assert link.wait_connected(5)
        proxy.delay_downstream(0.4 * KEEPALIVE_S)
        time.sleep(1.3 * KEEPALIVE_S)  # the holder blocked elsewhere: nothing serves the link
        assert link.next_event(1.0 * KEEPALIVE_S) is None  # no ConnectionLost
        assert link.connected
        assert len(proxy.connections()) == 1
    finally:
        link.close()
