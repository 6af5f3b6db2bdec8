"""The services' health as an operator and Docker see it: the health file, `/healthz`,
`gateway-healthcheck`, and the exit of a service whose problem lasted too long."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from gateway_common.health import EXIT_UNHEALTHY
from gateway_dash7 import MessageType, encode_frame
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import BIN
from gateway_devkit.scrape import http_get
from gateway_devkit.servers import free_port

pytestmark = pytest.mark.integration


def healthz(port: int) -> tuple[int, str]:
    return http_get(port, "/healthz")


def healthcheck(health_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "gateway-healthcheck")],
        env={**os.environ, "GATEWAY_HEALTH_FILE": str(health_file)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_decoder_healthy_with_redis(tmp_path, redis_url, stream_prefix) -> None:
    port, health_file = free_port(), tmp_path / "health.json"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_STREAM_PREFIX": stream_prefix,
        "GATEWAY_METRICS_PORT": str(port),
        "GATEWAY_HEALTH_FILE": str(health_file),
        "GATEWAY_BLOCK_MS": "200",
    }
    process = subprocess.Popen([str(BIN / "gateway-decoder")], env=env, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: healthz(port) == (200, "ok\n"), 10), healthz(port)
        result = healthcheck(health_file)
        assert result.returncode == 0, result.stderr
        status, metrics = http_get(port, "/metrics")
        assert status == 200, metrics
        assert "process_resident_memory_bytes" in metrics
        assert "gateway_decode_seconds" in metrics
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_ingest_without_its_port_is_unhealthy_then_exits(
    tmp_path, redis_url, stream_prefix
) -> None:
    port, health_file = free_port(), tmp_path / "health.json"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_STREAM_PREFIX": stream_prefix,
        "GATEWAY_SERIAL_PORT": str(tmp_path / "no-such-tty"),
        "GATEWAY_METRICS_PORT": str(port),
        "GATEWAY_HEALTH_FILE": str(health_file),
        "GATEWAY_REOPEN_BACKOFF_MAX_S": "0.5",
        "GATEWAY_UNHEALTHY_EXIT_S": "3",
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "gateway-ingest")], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_until(lambda: healthz(port)[0] == 503, 10), healthz(port)
        _status, body = healthz(port)
        assert "serial: cannot open" in body
        result = healthcheck(health_file)
        assert result.returncode == 1
        assert "serial: cannot open" in result.stderr
        code = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == EXIT_UNHEALTHY
    assert time.monotonic() - started >= 3
    assert "unhealthy_too_long" in process.stderr.read()


def test_publisher_reports_an_unreachable_broker(tmp_path, redis_url, stream_prefix) -> None:
    port, health_file = free_port(), tmp_path / "health.json"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_STREAM_PREFIX": stream_prefix,
        "GATEWAY_MQTT_HOST": "127.0.0.1",
        "GATEWAY_MQTT_PORT": str(free_port()),  # nothing listens there
        "GATEWAY_MQTT_TLS": "false",
        "GATEWAY_PROJECT_ID": "p",
        "GATEWAY_EDGE_NODE_ID": "e",
        "GATEWAY_METRICS_PORT": str(port),
        "GATEWAY_HEALTH_FILE": str(health_file),
        "GATEWAY_BLOCK_MS": "200",
    }
    process = subprocess.Popen([str(BIN / "gateway-publisher")], env=env, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: healthz(port)[0] == 503, 10), healthz(port)
        assert "mqtt: not connected" in healthz(port)[1]
        assert healthcheck(health_file).returncode == 1
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_ingest_keeps_reading_through_a_long_redis_outage(tmp_path, modem_line) -> None:
    """A restart would throw away the frames ingest buffers while Redis is away: it stays up."""
    port, health_file = free_port(), tmp_path / "health.json"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "GATEWAY_SERIAL_PORT": modem_line.path,
        "GATEWAY_METRICS_PORT": str(port),
        "GATEWAY_HEALTH_FILE": str(health_file),
        "GATEWAY_UNHEALTHY_EXIT_S": "1",
        "GATEWAY_REDIS_BACKOFF_MAX_S": "0.2",
        "GATEWAY_FLUSH_TIMEOUT_S": "0.5",  # so a wrongful stop would be over within the test
    }
    process = subprocess.Popen([str(BIN / "gateway-ingest")], env=env, stderr=subprocess.PIPE)
    try:
        modem_line.write(encode_frame(1, MessageType.ALP_DATA, b"\x20\x33"))
        assert wait_until(lambda: "redis: cannot write frames" in healthz(port)[1], 10)
        time.sleep(3)  # three times the unhealthy limit
        assert process.poll() is None, "ingest exited during a Redis outage"
        assert healthz(port)[0] == 503
    finally:
        process.terminate()
        process.wait(15)
