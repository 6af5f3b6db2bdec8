from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway_common.health import (
    EXIT_UNHEALTHY,
    EXIT_WEDGED,
    UNHEALTHY_STOP_REASON,
    Health,
    Watchdog,
    read_health_file,
)
from gateway_common.http_endpoint import serve_http
from gateway_common.lifecycle import StopSignal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_state_tracks_beats_and_problems() -> None:
    clock = FakeClock()
    health = Health("decoder", clock=clock)
    assert health.state().ok
    clock.now += 5
    assert health.state().beat_age_s == 5
    health.beat()
    assert health.state().beat_age_s == 0
    health.problem("redis", "unreachable")
    health.problem("serial", "gone")
    clock.now += 3
    state = health.state()
    assert not state.ok
    assert state.reason == "redis: unreachable; serial: gone"
    assert state.unhealthy_for_s == 3
    health.clear("redis")
    assert health.state().reason == "serial: gone"
    assert health.state().unhealthy_for_s == 3  # still unhealthy since the first problem
    health.clear("serial")
    assert health.state().ok
    assert health.state().unhealthy_for_s == 0


def test_health_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    health = Health("ingest", file=path)
    health.beat()
    healthy, text = read_health_file(path, max_age_s=30)
    assert healthy, text
    health.problem("serial", "cannot open /dev/ttyACM0")
    healthy, text = read_health_file(path, max_age_s=30)
    assert not healthy
    assert "serial: cannot open /dev/ttyACM0" in text
    record = json.loads(path.read_text())
    assert record["service"] == "ingest"


def test_stale_or_missing_health_file_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    assert not read_health_file(path, 30)[0]
    path.write_text(json.dumps({"service": "x", "beat_at": 100.0, "ok": True}))
    healthy, text = read_health_file(path, max_age_s=30, now=200.0)
    assert not healthy
    assert "no progress for 100 s" in text
    path.write_text("not json")
    assert not read_health_file(path, 30)[0]


def test_healthcheck_command_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    command = [str(Path(sys.executable).parent / "gateway-healthcheck")]
    env = {"GATEWAY_HEALTH_FILE": str(path), "GATEWAY_HEALTH_MAX_AGE_S": "30"}
    missing = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 1
    assert "no usable health file" in missing.stderr
    health = Health("publisher", file=path)
    health.beat()
    fine = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert fine.returncode == 0, fine.stderr
    health.problem("mqtt", "not connected to the broker")
    sick = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert sick.returncode == 1
    assert "mqtt: not connected to the broker" in sick.stderr


class HardExits:
    """Stands in for os._exit: records the codes, and signals the first."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.done = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.done.set()


def _watchdog(health: Health, stop: StopSignal, exits: HardExits, **limits: float) -> Watchdog:
    return Watchdog(health, stop, check_interval_s=0.01, hard_exit=exits, **limits).start()


def test_watchdog_hard_exits_a_wedged_loop() -> None:
    clock = FakeClock()
    health = Health("decoder", clock=clock)
    stop = StopSignal()
    exits = HardExits()
    _watchdog(health, stop, exits, watchdog_s=10, unhealthy_exit_s=1000)
    clock.now += 5
    assert not exits.done.wait(0.1)
    clock.now += 6
    assert exits.done.wait(2)
    assert exits.codes == [EXIT_WEDGED]
    stop.set()


def test_watchdog_stops_a_service_unhealthy_for_too_long() -> None:
    clock = FakeClock()
    health = Health("ingest", clock=clock)
    stop = StopSignal()
    Watchdog(
        health,
        stop,
        watchdog_s=1000,
        unhealthy_exit_s=60,
        check_interval_s=0.01,
        hard_exit=lambda code: pytest.fail(f"hard exit {code}"),
    ).start()
    health.problem("serial", "gone")
    clock.now += 30
    health.beat()
    assert not stop.wait(0.1)
    clock.now += 31
    health.beat()
    assert stop.wait(2)
    assert stop.reason == UNHEALTHY_STOP_REASON


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_http_endpoint_serves_metrics_and_health(unused_tcp_port: int) -> None:
    registry = CollectorRegistry()
    Counter("gateway_test_things", "things", registry=registry).inc(3)
    clock = FakeClock()
    health = Health("decoder", clock=clock)
    stop_http = serve_http(unused_tcp_port, registry, health, max_age_s=30, host="127.0.0.1")
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        status, body = _get(base + "/metrics")
        assert status == 200
        assert "gateway_test_things_total 3.0" in body
        assert _get(base + "/healthz") == (200, "ok\n")
        health.problem("redis", "unreachable")
        assert _get(base + "/healthz") == (503, "redis: unreachable\n")
        health.clear("redis")
        clock.now += 31
        status, body = _get(base + "/healthz")
        assert status == 503
        assert body.startswith("stalled for 31 s")
    finally:
        stop_http()


@pytest.fixture
def unused_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_problem_a_restart_cannot_fix_never_counts_towards_the_exit() -> None:
    clock = FakeClock()
    health = Health("ingest", clock=clock)
    health.problem("redis", "unreachable", restart_helps=False)
    clock.now += 1000
    state = health.state()
    assert not state.ok
    assert state.reason == "redis: unreachable"
    assert state.unhealthy_for_s == 0
    # Another problem meanwhile does not count either: a restart would still lose the buffer.
    health.problem("serial", "gone")
    clock.now += 7
    assert health.state().unhealthy_for_s == 0
    health.clear("redis")
    clock.now += 3
    assert health.state().unhealthy_for_s == 10  # since the serial problem began


def test_watchdog_hard_exits_a_shutdown_that_hangs() -> None:
    clock = FakeClock()
    health = Health("publisher", clock=clock)
    stop = StopSignal()
    exits = HardExits()
    _watchdog(health, stop, exits, watchdog_s=0.3, unhealthy_exit_s=60)  # 0.3 s to stop, too
    health.problem("mqtt", "not connected")
    clock.now += 61
    health.beat()
    assert stop.wait(2)  # asked to stop; the service never finishes stopping
    assert exits.done.wait(5)
    assert exits.codes == [EXIT_UNHEALTHY]
