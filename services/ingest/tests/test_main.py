"""`gateway-ingest` as a process: a bad setting stops it at start with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "gateway-ingest"


@pytest.mark.parametrize("value", ["fast", "0"])
def test_bad_baudrate_exits_2_naming_the_variable(value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_SERIAL_BAUDRATE"] = value
    proc = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "GATEWAY_SERIAL_BAUDRATE" in lines[0]
    assert proc.stdout == ""
