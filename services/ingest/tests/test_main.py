"""`gateway-ingest` as a process: a bad setting stops it at start with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway_ingest.settings import IngestSettings

SCRIPT = Path(sys.executable).parent / "gateway-ingest"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_SERIAL_BAUDRATE", "fast"),
        ("GATEWAY_SERIAL_BAUDRATE", "0"),
        ("GATEWAY_SERIAL_PORT", "foo://modem"),  # a protocol pyserial does not know
        ("GATEWAY_SERIAL_PORT", "socket://sim"),  # no port: pyserial's parser would crash later
        ("GATEWAY_SERIAL_PORT", "socket://sim:abc"),
        ("GATEWAY_FLUSH_TIMEOUT_S", "500"),  # longer than the watchdog lets a stop take
    ],
)
def test_a_bad_value_exits_2_naming_the_variable(variable: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env[variable] = value
    proc = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "port",
    [
        "/dev/serial/by-id/usb-LiQuiBit_IOWAY-if00",  # not plugged in yet: opened later
        "/dev/serial/by-path/platform-3f980000.usb-usb-0:1.2:1.0",
        "socket://sim:7000",
        "rfc2217://modem.local:2217?logging=debug",
        "hwgrep://IOWAY",  # looked up when opened, so the device may come later
    ],
)
def test_ports_that_may_only_open_later_are_accepted(port: str) -> None:
    assert IngestSettings(serial_port=port).serial_port == port
