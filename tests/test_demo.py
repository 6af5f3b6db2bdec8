"""`make demo` as a newcomer runs it: readings must reach the broker within seconds, and
everything the demo started must be gone afterwards."""

from __future__ import annotations

import re
import subprocess

import pytest

from gateway_devkit.processes import BIN

DEMO = [str(BIN / "gateway-demo")]  # what `make demo` runs

pytestmark = [pytest.mark.integration, pytest.mark.system]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, "--duration", "6", "--interval-s", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_readings_flowed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ddata = [line for line in result.stdout.splitlines() if re.match(r"[\d:.]+ DDATA ", line)]
    assert len(ddata) >= 6, result.stdout
    summary = re.search(r"received (\d+) DDATA and (\d+) DBIRTH from (\d+) devices", result.stdout)
    assert summary, result.stdout
    assert int(summary[1]) == len(ddata)
    assert int(summary[2]) == int(summary[3]) == 3
    assert re.search(r"^field console: http://127\.0\.0\.1:\d+/$", result.stdout, re.MULTILINE)
    # the demo's DCMD went through the modem to the sensor
    confirmed = r"^COMMAND 1 confirmed: queued \+[\d.]+ s, sent"
    assert re.search(confirmed, result.stdout, re.MULTILINE), result.stdout


def test_demo_on_the_local_redis_and_broker() -> None:
    assert_readings_flowed(run_demo())


def test_demo_with_private_redis_and_broker() -> None:
    assert_readings_flowed(run_demo("--private"))
