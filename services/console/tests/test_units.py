"""The console's pure parts: credentials, settings, formatting, plot geometry, health probes."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from gateway_console.auth import credentials_match
from gateway_console.filters import bars, duration
from gateway_console.history import Point
from gateway_console.plots import device_plots, line_plot
from gateway_console.service_health import gauge, metrics_url, probe
from gateway_console.settings import ConsoleSettings, parse_health_urls


def basic(text: bytes) -> bytes:
    return b"Basic " + base64.b64encode(text)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic(b"admin:pw"), True),
        (b"basic " + base64.b64encode(b"admin:pw"), True),
        (basic(b"admin:pw2"), False),
        (basic(b"admin:p"), False),
        (basic(b"root:pw"), False),
        (basic(b"adminpw"), False),
        (basic(b":pw"), False),
        (b"Bearer xyz", False),
        (b"Basic !!!not-base64", False),
        (b"", False),
        (None, False),
    ],
)
def test_credentials_must_match_exactly(header, ok) -> None:
    assert credentials_match(header, b"admin", b"pw") is ok


def test_a_password_with_a_colon_and_non_ascii_works() -> None:
    password = "a:b:ç".encode()
    assert credentials_match(basic(b"admin:" + password), b"admin", password)


def test_health_urls_are_name_url_pairs() -> None:
    assert parse_health_urls(
        " ingest=http://ingest:9100/healthz , decoder=http://d:1/healthz,"
    ) == {
        "ingest": "http://ingest:9100/healthz",
        "decoder": "http://d:1/healthz",
    }
    assert parse_health_urls("") == {}
    for bad in ("ingest", "ingest=ftp://x", "=http://x", "a=http://x,a=http://y"):
        with pytest.raises(ValueError):
            parse_health_urls(bad)


def test_settings_need_a_password_file_unless_auth_is_off(monkeypatch, tmp_path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    with pytest.raises(ValidationError, match="GATEWAY_CONSOLE_PASSWORD_FILE is not set"):
        ConsoleSettings()
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_CONSOLE_PASSWORD_FILE", str(empty))
    with pytest.raises(ValidationError, match="is empty"):
        ConsoleSettings()
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_CONSOLE_PASSWORD_FILE", str(secret))
    assert ConsoleSettings().password == "s3cret"  # noqa: S105
    assert "s3cret" not in repr(ConsoleSettings())
    monkeypatch.delenv("GATEWAY_CONSOLE_PASSWORD_FILE")
    monkeypatch.setenv("GATEWAY_CONSOLE_AUTH", "off")
    settings = ConsoleSettings()
    assert settings.password is None
    assert settings.public_url == "http://127.0.0.1:8080/"


def test_durations_and_bars_read_well() -> None:
    assert [duration(s) for s in (None, 0, 42.4, 119, 120, 7199, 7200, 172_800)] == [
        "—", "0 s", "42 s", "119 s", "2 min", "120 min", "2.0 h", "2.0 d",
    ]  # fmt: skip
    assert [bars(lb) for lb in (None, 50, 79, 80, 94, 95, 110, 124, 125, 200)] == [
        0, 4, 4, 3, 3, 2, 1, 1, 0, 0,
    ]  # fmt: skip


def test_a_silence_is_a_gap_and_a_lone_point_a_dot() -> None:
    times = [0.0, 10.0, 20.0, 100.0, 110.0, 300.0]
    plot = line_plot(
        "t", "u", times, [("a", "s1", [1, 2, 3, 4, None, 5])], start=0, end=300, gap_s=25
    )
    path = plot.series[0].path
    assert path.count("M") == 3  # 0-20, then 100 alone (110 has no value), then 300 alone
    assert path.count("L") == 2
    assert path.count("h0") == 3
    assert plot.points == 5


def test_an_empty_plot_says_so() -> None:
    plot = line_plot("t", "u", [], [("a", "s1", [])], start=0, end=10, gap_s=1)
    assert plot.empty
    assert plot.series[0].path == ""


def test_device_plots_leave_invalid_readings_out_of_voltage_and_energy() -> None:
    points = [
        Point(
            0, 70, energy=True, valid=True, voltage_v=(230, 231, 232), active_energy_wh=(1, 2, 3)
        ),
        Point(600, 71, energy=True, valid=False, voltage_v=(1, 1, 1), active_energy_wh=(0, 0, 0)),
        Point(650, 72, energy=False, valid=True),
        Point(
            1200, 73, energy=True, valid=True, voltage_v=(229, 230, 231), active_energy_wh=(4, 5, 6)
        ),
    ]
    link, volts, energy = device_plots(points, start=0, end=1200, gap_s=1500)
    assert link.points == 4
    assert volts.points == 6
    assert energy.points == 6
    assert all(s.path.count("M") == 2 for s in volts.series)  # cut at the invalid reading


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            code, body = (503, b"mqtt: connection refused\n")
        elif self.path == "/metrics":
            code, body = 200, b"# HELP x\ngateway_mqtt_connected 0.0\nother 1\n"
        else:
            code, body = 404, b""
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()
    server.server_close()


def test_a_service_reports_its_reason_and_gauges(fake_service) -> None:
    health = probe("publisher", fake_service)
    assert health.healthy is False
    assert health.detail == "mqtt: connection refused"
    assert health.gauges == {"mqtt": 0.0}
    assert gauge((health,), "mqtt") == 0.0
    assert gauge((health,), "serial") is None
    assert metrics_url("http://h:1/healthz?x#y") == "http://h:1/metrics"


def test_a_service_that_does_not_answer_is_shown_as_such() -> None:
    from gateway_devkit.servers import free_port  # noqa: PLC0415

    health = probe("ingest", f"http://127.0.0.1:{free_port()}/healthz")
    assert health.healthy is None
    assert health.detail.startswith("no answer")


def test_a_service_that_answers_garbage_is_shown_as_such() -> None:
    import socket  # noqa: PLC0415

    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        for _ in range(2):  # /healthz, then /metrics if the probe asks for it
            try:
                connection, _address = server.accept()
            except OSError:  # the test closed the server: the probe asked only once
                return
            with connection:
                connection.recv(1024)
                connection.sendall(b"not http at all\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    health = probe("ingest", f"http://127.0.0.1:{server.getsockname()[1]}/healthz")
    server.close()
    thread.join(5)
    assert health.healthy is None
    assert health.detail.startswith("no answer")
