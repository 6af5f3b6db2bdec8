"""What the demo runs: the local Redis and Mosquitto (or private ones), gateway-sim and the
three services, and the demo's keys in Redis."""

from __future__ import annotations

import os
import select
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import redis

from gateway_devkit.processes import BIN, START_TIMEOUT_S, clean_env
from gateway_devkit.servers import (
    LOOPBACK,
    PrivateBroker,
    PrivateRedis,
    ServerError,
    free_port,
    port_answers,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import ExitStack
    from pathlib import Path

    from gateway_devkit.processes import Supervisor

DEFAULT_REDIS_PORT = 6379
DEFAULT_MQTT_PORT = 1883
PROJECT_ID = "demo"
EDGE_NODE_ID = "demo-gateway"
TOPIC_ROOT = "mqtts"


class DemoError(Exception):
    """Something the demo needs is missing or failed to start; the message says what."""


@dataclass(frozen=True, slots=True)
class Infrastructure:
    redis_url: str
    mqtt_host: str
    mqtt_port: int
    notes: tuple[str, ...]


def provide_infrastructure(log_dir: Path, private: bool, stack: ExitStack) -> Infrastructure:
    """The local Redis and Mosquitto when they answer, else private ones (stopped by `stack`),
    else DemoError."""
    redis_port, redis_note = _local_or_private(
        ("Redis", "the one", DEFAULT_REDIS_PORT),
        lambda: PrivateRedis(log_dir / "redis", appendfsync=None),
        private,
        stack,
    )
    mqtt_port, mqtt_note = _local_or_private(
        ("MQTT", "the broker", DEFAULT_MQTT_PORT),
        lambda: PrivateBroker(log_dir / "mosquitto", persistence=False),
        private,
        stack,
    )
    redis_url = f"redis://{LOOPBACK}:{redis_port}/0"
    return Infrastructure(redis_url, LOOPBACK, mqtt_port, (redis_note, mqtt_note))


def _local_or_private(
    local: tuple[str, str, int],
    make_private: Callable[[], PrivateRedis | PrivateBroker],
    private: bool,
    stack: ExitStack,
) -> tuple[int, str]:
    """(port, note): the local server (label, what it is called, port) if it answers and
    `private` is false, else a private one."""
    label, called, port = local
    if not private and port_answers(LOOPBACK, port, timeout_s=0.5):
        return port, f"{label}: {called} on {LOOPBACK}:{port}"
    try:
        server = make_private()
    except ServerError as exc:  # not installed
        raise DemoError(
            f"no {label} server answers on {LOOPBACK}:{port} and {exc}, or start one"
        ) from exc
    stack.callback(server.stop)
    try:
        server.start()
    except ServerError as exc:
        raise DemoError(f"{server.name} did not start: {exc}") from exc
    return server.port, f"{label}: private {server.name} on {LOOPBACK}:{server.port}"


def gateway_env(infra: Infrastructure, prefix: str) -> dict[str, str]:
    """This environment without GATEWAY_* variables, plus the demo's own."""
    return clean_env(
        GATEWAY_REDIS_URL=infra.redis_url,
        GATEWAY_STREAM_PREFIX=prefix,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL="info",
    )


def start_simulator(
    supervisor: Supervisor, sensors: int, interval_s: float, button_probability: float, seed: int
) -> str:
    """Start gateway-sim on a free TCP port; its `socket://` URL."""
    argv = [
        str(BIN / "gateway-sim"),
        f"--listen=tcp://{LOOPBACK}:0",
        "--wait-for-client",
        f"--sensors={sensors}",
        f"--interval-s={interval_s}",
        f"--button-probability={button_probability}",
        f"--seed={seed}",
    ]
    child = supervisor.start("gateway-sim", argv, pipe_stdout=True)
    assert child.process.stdout is not None
    line = _read_line(child.process.stdout, START_TIMEOUT_S)
    if not line.startswith("listening: socket://"):
        raise DemoError(f"gateway-sim did not start; see {child.log_path}")
    return line.removeprefix("listening: ")


def _read_line(stream: IO[bytes], timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    return stream.readline().decode().strip() if ready else ""


def start_services(supervisor: Supervisor, infra: Infrastructure, sim_url: str) -> dict[str, int]:
    """Start the three services; their metrics ports (the console reads their health there)."""
    tag = str(os.getpid())
    services: dict[str, dict[str, str]] = {
        "gateway-ingest": {"GATEWAY_SERIAL_PORT": sim_url},
        "gateway-decoder": {"GATEWAY_CONSUMER_NAME": f"demo-decoder-{tag}"},
        "gateway-publisher": {
            "GATEWAY_CONSUMER_NAME": f"demo-publisher-{tag}",
            "GATEWAY_MQTT_HOST": infra.mqtt_host,
            "GATEWAY_MQTT_PORT": str(infra.mqtt_port),
            "GATEWAY_MQTT_TLS": "false",
            "GATEWAY_MQTT_CLIENT_ID": f"demo-gateway-{tag}",
            "GATEWAY_PROJECT_ID": PROJECT_ID,
            "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
            "GATEWAY_TOPIC_ROOT": TOPIC_ROOT,
            "GATEWAY_DOWNLINK": "true",  # the demo's DCMD (demo.downlink)
        },
    }
    metrics_ports = {name: free_port() for name in services}
    for name, extra in services.items():
        supervisor.start_service(name, GATEWAY_METRICS_PORT=str(metrics_ports[name]), **extra)
    return metrics_ports


def gateway_counts(redis_url: str, prefix: str) -> dict[str, int]:
    """Entries ever added to the frames, records and dead streams (trimming does not matter)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    counts = {}
    try:
        for stream in ("frames", "records", "dead"):
            try:
                counts[stream] = int(client.xinfo_stream(f"{prefix}:{stream}")["entries-added"])
            except redis.ResponseError:  # the stream was never created
                counts[stream] = 0
    finally:
        client.close()
    return counts


def delete_keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()
