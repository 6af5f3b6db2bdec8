"""Fixtures shared by every test: the test kit of gateway_devkit (the shared Redis and Mosquitto
on loopback isolated per test, private servers, MQTT watches, a pty modem line), and the shared
test vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["gateway_devkit.fixtures"]

ROOT = Path(__file__).resolve().parent
VECTORS_PATH = Path(
    os.environ.get("GATEWAY_VECTORS", str(ROOT / "tests" / "vectors" / "frames.json"))
)


@pytest.fixture(scope="session")
def vectors() -> list[dict[str, Any]]:
    """The test vectors (tests/vectors/frames.json; GATEWAY_VECTORS overrides the path)."""
    cases: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["cases"]
    return cases
