"""The publisher as an operator watches it: gateway_mqtt_connected through a broker outage (a
private Mosquitto the test stops), and device staleness in gateway_device_stale and in
`gatewayctl devices`/`status`, both from the one rule in gateway_common.devices."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway_common.entries import Record, encode
from gateway_common.records import decode_alp
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import D7Status, EnergyConfigFile, EnergyFile, encode_unsolicited
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import BIN, stop_process
from gateway_devkit.scrape import http_get, sample
from gateway_devkit.servers import PrivateBroker, free_port

from .ops_helpers import gatewayctl

pytestmark = pytest.mark.integration

ENERGY = EnergyFile((1, 2, 3), (4, 5, 6), (7, 8, 9), (230, 231, 232))


def start_publisher(
    tmp_path: Path, redis_url: str, prefix: str, mqtt_port: int, metrics_port: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_STREAM_PREFIX": prefix,
        "GATEWAY_MQTT_HOST": "127.0.0.1",
        "GATEWAY_MQTT_PORT": str(mqtt_port),
        "GATEWAY_MQTT_TLS": "false",
        "GATEWAY_MQTT_CLIENT_ID": f"ops-{prefix}",
        "GATEWAY_PROJECT_ID": "p",
        "GATEWAY_EDGE_NODE_ID": "e",
        "GATEWAY_TOPIC_ROOT": prefix,
        "GATEWAY_METRICS_PORT": str(metrics_port),
        "GATEWAY_HEALTH_FILE": str(tmp_path / "publisher.health"),
        "GATEWAY_BLOCK_MS": "200",
        "GATEWAY_BACKLOG_INTERVAL_MS": "200",
        "GATEWAY_RECONNECT_MAX_S": "1",
    }
    return subprocess.Popen(
        [str(BIN / "gateway-publisher")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "publisher.log").open("wb"),
    )


def test_mqtt_connected_drops_to_0_within_seconds_of_an_outage(
    tmp_path: Path,
    redis_url: str,
    stream_prefix: str,
    private_broker: Callable[..., PrivateBroker],
) -> None:
    mosquitto = private_broker(persistence=False)  # restarts with no session
    port = free_port()
    publisher = start_publisher(tmp_path, redis_url, stream_prefix, mosquitto.port, port)
    try:
        connected = lambda: sample(port, "gateway_mqtt_connected")  # noqa: E731
        assert wait_until(lambda: http_get(port, "/metrics")[0] == 200 and connected() == 1, 10)
        mosquitto.stop()
        outage = time.monotonic()
        assert wait_until(lambda: connected() == 0, 10)
        seen_after_s = time.monotonic() - outage
        assert seen_after_s < 3, seen_after_s
        status, body = http_get(port, "/healthz")
        assert status == 503
        assert "mqtt" in body
        mosquitto.start()
        assert wait_until(lambda: connected() == 1, 10)
        assert wait_until(lambda: http_get(port, "/healthz")[0] == 200, 5)
    finally:
        stop_process(publisher)
    assert publisher.returncode == 0, (tmp_path / "publisher.log").read_text()


def reading(address: bytes, received_at: float, frame_id: str, config_s: int = 0) -> Record:
    file_id, data = (62, EnergyConfigFile(config_s).encode()) if config_s else (52, ENERGY.encode())
    record = decode_alp(frame_id, encode_unsolicited(file_id, data, D7Status(address)), received_at)
    assert isinstance(record, Record)
    return record


def test_device_staleness_in_the_gauge_and_in_gatewayctl(
    tmp_path: Path, redis_url: str, stream_prefix: str, redis_client: redis.Redis, broker: Any
) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    old, fast, fresh = (bytes([0, 0, 0, 0, 0, 0, 0, n]) for n in (0xA1, 0xB2, 0xC3))
    records = [
        reading(old, now - 4000, "1-0"),  # silent 4000 s > 3 x 600 s
        reading(fast, now - 300, "2-0", config_s=60),  # its interval: 60 s
        reading(fast, now - 200, "3-0"),  # silent 200 s > 3 x 60 s
        reading(fresh, now - 10, "4-0"),
    ]
    for record in records:
        redis_client.xadd(keys.records, {ENTRY_FIELD: encode(record)})
    port = free_port()
    publisher = start_publisher(tmp_path, redis_url, stream_prefix, broker.port, port)
    ctl_env = {"GATEWAY_REDIS_URL": redis_url, "GATEWAY_STREAM_PREFIX": stream_prefix}
    try:

        def stale() -> dict[str, float | None]:
            return {
                d: sample(port, "gateway_device_stale", device_id=d) for d in ("A1", "B2", "C3")
            }

        assert wait_until(lambda: stale() == {"A1": 1, "B2": 1, "C3": 0}, 10), stale()
        devices = gatewayctl(ctl_env, "devices", "--json").json()["devices"]
        assert {d["device_id"]: d["stale"] for d in devices} == {
            "A1": True,
            "B2": True,
            "C3": False,
        }
        assert {d["device_id"]: d["interval_s"] for d in devices}["B2"] == 60
        assert gatewayctl(ctl_env, "status", "--json").json()["stale_devices"] == 2

        # it recovers on its next reading
        redis_client.xadd(keys.records, {ENTRY_FIELD: encode(reading(old, time.time(), "5-0"))})
        assert wait_until(lambda: stale() == {"A1": 0, "B2": 1, "C3": 0}, 10), stale()
        devices = gatewayctl(ctl_env, "devices", "--json").json()["devices"]
        assert {d["device_id"]: d["stale"] for d in devices}["A1"] is False
    finally:
        stop_process(publisher)
        for topic_device in ("A1", "B2", "C3"):  # the retained DBIRTHs of this test
            subprocess.run(
                [
                    "mosquitto_pub",
                    "-h",
                    broker.host,
                    "-p",
                    str(broker.port),
                    "-r",
                    "-n",
                    "-t",
                    f"{stream_prefix}/p/DBIRTH/e/{topic_device}",
                ],
                check=False,
                capture_output=True,
            )
