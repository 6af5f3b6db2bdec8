"""The console as a process, over HTTP: authentication, security headers, read-only routes,
4xx (never a traceback) for bad paths and query values, a refused start without a password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway_common.streams import StreamKeys
from gateway_console.headers import CONTENT_SECURITY_POLICY

from .conftest import PASSWORD, add_dead_letter, add_readings, energy_record, register

pytestmark = [pytest.mark.integration, pytest.mark.system]

BIN = Path(sys.executable).parent
DEVICE = "B5700009151DC"


def test_without_a_password_file_it_refuses_to_start_naming_the_variable(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_HEALTH_FILE"] = str(tmp_path / "health.json")
    result = subprocess.run(
        [str(BIN / "gateway-console")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert "GATEWAY_CONSOLE_PASSWORD_FILE" in lines[0]
    assert "GATEWAY_CONSOLE_AUTH=off" in lines[0]


def test_every_path_needs_the_password(start_console, redis_client, stream_prefix) -> None:
    register(redis_client, StreamKeys(stream_prefix), DEVICE, last_seen=time.time())
    console = start_console()
    for path in (
        "/",
        "/devices",
        f"/devices/{DEVICE}",
        "/dead",
        "/parts/overview",
        "/static/live.js",
        "/nope",
    ):
        status, headers, body = console.get(path, auth=None)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "gateway" not in body.lower() or "password" in body
    assert console.get("/", auth="admin:wrong")[0] == 401
    assert console.get("/", auth=f"root:{PASSWORD}")[0] == 401
    assert console.get("/")[0] == 200
    assert PASSWORD not in console.log()


def test_pages_answer_with_security_headers(start_console, redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    register(redis_client, keys, DEVICE, last_seen=now - 5)
    add_readings(redis_client, keys, energy_record(DEVICE, now - 5))
    add_dead_letter(redis_client, keys, "unknown_file", bytes.fromhex("c0ffee"))
    console = start_console()
    for path in ("/", "/devices", f"/devices/{DEVICE}", "/dead", f"/parts/devices/{DEVICE}/plots"):
        status, headers, body = console.get(path)
        assert status == 200, (path, body)
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in body
        assert " style=" not in body
    status, _headers, body = console.get("/dead")
    assert "c0 ff ee" in body
    assert "unknown_file" in body


BAD = [
    ("/nope", 404),
    ("/devices/not-a-device", 404),
    ("/devices/abc", 404),
    ("/devices/0123456789ABCDEF0", 404),
    ("/devices/ABCDEF", 404),  # well formed, but unknown
    ("/devices/%00", 404),
    ("/static/../settings.py", 404),
    ("/static/%2e%2e/settings.py", 404),
    ("/devices?sort=password", 400),
    ("/devices?order=sideways", 400),
    ("/devices?q=%3Cscript%3E", 400),
    ("/devices?q=" + "A" * 65, 400),
    ("/devices?page=2", 400),
    (f"/devices/{DEVICE}?hours=2", 400),
    (f"/devices/{DEVICE}?hours=-1", 400),
    (f"/parts/devices/{DEVICE}/plots?hours=1e9", 400),
    (f"/parts/devices/{DEVICE}/plots?hours=336", 400),  # beyond the frames archive's 7 days
    ("/dead?limit=0", 400),
    ("/dead?limit=1001", 400),
    ("/dead?limit=ten", 400),
    ("/dead?limit=%F0%9F%98%80", 400),
    ("/?x=1", 400),
]


def test_bad_paths_and_values_get_4xx_not_tracebacks(
    start_console, redis_client, stream_prefix
) -> None:
    register(redis_client, StreamKeys(stream_prefix), DEVICE, last_seen=time.time())
    console = start_console(auth="off")
    for path, status in BAD:
        got, headers, body = console.get(path)
        assert got == status, (path, body)
        assert "Traceback" not in body, path
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
    assert "Traceback" not in console.log()


def test_nothing_changes_state(start_console, redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    register(redis_client, keys, DEVICE, last_seen=time.time())
    add_dead_letter(redis_client, keys, "unknown_file", b"\x01")
    console = start_console(auth="off")
    before = {k: redis_client.type(k) for k in redis_client.scan_iter(match=f"{stream_prefix}:*")}
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/dead", f"/devices/{DEVICE}"):
            assert console.get(path, method=method)[0] == 405, (method, path)
    assert console.get("/", method="HEAD")[0] == 200
    after = {k: redis_client.type(k) for k in redis_client.scan_iter(match=f"{stream_prefix}:*")}
    assert after == before
    assert redis_client.xlen(keys.dead) == 1


def test_a_stop_is_clean_and_the_heartbeat_is_written(start_console, tmp_path) -> None:
    console = start_console(auth="off")
    health = list(tmp_path.glob("console-*-health.json"))
    assert health
    assert '"ok": true' in health[0].read_text(encoding="utf-8")
    console.process.terminate()
    assert console.process.wait(10) == 0
    assert "Traceback" not in console.log()
