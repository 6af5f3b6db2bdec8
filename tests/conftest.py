"""Fixtures for the cross-service tests: the gateway's services as real processes (a pty plays
the modem's serial line and an MQTT watch records what reaches the broker: both come from
gateway_devkit.fixtures)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from gateway_devkit.modem_line import ModemLine
from gateway_devkit.mqtt_watch import MqttWatch
from gateway_devkit.processes import Supervisor
from gateway_devkit.servers import PrivateBroker, PrivateRedis

PROJECT_ID = "proj-test"
EDGE_NODE_ID = "edge-test"


@pytest.fixture
def gateway(tmp_path, redis_url, stream_prefix, broker, topic_root) -> Iterator[Supervisor]:
    """The services as processes sharing one environment: `gateway.start_service(name,
    command, **extra_env)`; each gets a health file of its own; all stopped at the end."""
    supervisor = Supervisor(
        tmp_path,
        {
            **os.environ,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_STREAM_PREFIX": stream_prefix,
            "GATEWAY_MQTT_HOST": broker.host,
            "GATEWAY_MQTT_PORT": str(broker.port),
            "GATEWAY_MQTT_TLS": "false",
            "GATEWAY_MQTT_CLIENT_ID": f"gw-{stream_prefix}",
            "GATEWAY_PROJECT_ID": PROJECT_ID,
            "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
            "GATEWAY_TOPIC_ROOT": topic_root,
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_LOG_LEVEL": "debug",
        },
    )
    yield supervisor
    supervisor.stop_all()


@pytest.fixture
def watch(subscriber, broker, topic_root) -> MqttWatch:
    """Every message published under this test's topic root, in arrival order."""
    return subscriber(broker.host, broker.port, f"{topic_root}/#")


# ------------------------------------------------------------------ the fault scenarios
# (tests/test_chaos*.py, tests/test_soak.py: private servers, services as processes; a module
# with other needs defines a fixture of the same name)


@pytest.fixture
def redis_server(private_redis) -> PrivateRedis:
    """A private Redis with the Pi's AOF (fsync always): survives kill -9."""
    return private_redis(appendfsync="always")


@pytest.fixture
def mosquitto(private_broker) -> PrivateBroker:
    """A private Mosquitto: sessions saved on SIGTERM; no limit on the QoS 1 messages queued for
    a subscriber (one cut off by a restart, or lagging a moment, loses nothing)."""
    return private_broker("max_queued_messages 0")


@pytest.fixture
def paced_line() -> Iterator[ModemLine]:
    """A lossy pty: like a UART, it does not wait for a reader (a reader that stops reading
    loses frames)."""
    line = ModemLine(lossy=True)
    yield line
    line.close()


@pytest.fixture
def supervisor(tmp_path) -> Iterator[Supervisor]:
    """The services' supervisor, logs in `tmp_path/logs`, its environment set by the test (or a
    module's `services` fixture); everything it started SIGKILLed at the end."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    services = Supervisor(log_dir)
    yield services
    services.stop_all(signal.SIGKILL)
