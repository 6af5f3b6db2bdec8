"""Fixtures shared by every test: the real Redis and Mosquitto on loopback, isolated per test.

Addresses come from the environment (GATEWAY_TEST_REDIS_URL, GATEWAY_TEST_MQTT_HOST,
GATEWAY_TEST_MQTT_PORT) with loopback defaults. Each test gets its own stream prefix and its own
MQTT topic root, so tests never see each other's data; the prefix's keys are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parent
VECTORS_PATH = Path(
    os.environ.get("GATEWAY_VECTORS", str(ROOT / "tests" / "vectors" / "frames.json"))
)


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


@pytest.fixture(scope="session")
def vectors() -> list[dict[str, Any]]:
    """The test vectors (tests/vectors/frames.json; GATEWAY_VECTORS overrides the path)."""
    cases: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["cases"]
    return cases


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def broker() -> Broker:
    return Broker(
        os.environ.get("GATEWAY_TEST_MQTT_HOST", "127.0.0.1"),
        int(os.environ.get("GATEWAY_TEST_MQTT_PORT", "1883")),
    )


@pytest.fixture
def stream_prefix(redis_url: str) -> Iterator[str]:
    """A stream prefix of this test's own; its keys are removed when the test ends."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def topic_root() -> str:
    """An MQTT topic root of this test's own, used instead of `mqtts`."""
    return f"test-{uuid.uuid4().hex[:12]}"
