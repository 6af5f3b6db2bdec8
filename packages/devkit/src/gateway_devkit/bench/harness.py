"""What every measurement on the running gateway works with: the gateway's three services as
processes on the private Redis and broker, the pty they read, the results gathered so far."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway_devkit.servers import LOOPBACK, free_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import redis

    from gateway_devkit.bench.options import Options
    from gateway_devkit.bench.subscriber import Subscriber
    from gateway_devkit.modem_line import ModemLine
    from gateway_devkit.processes import Child, Supervisor
    from gateway_devkit.servers import PrivateBroker, PrivateRedis

PREFIX = "bench"
TOPIC_ROOT = "bench"
PROJECT_ID = "bench"
EDGE_NODE_ID = "bench-node"
SERVICES = ("gateway-ingest", "gateway-decoder", "gateway-publisher")
STALL_TIMEOUT_S = 30.0
POLL_S = 0.05


class BenchError(Exception):
    """Something the benchmark needs is missing or failed; the message says what."""


@dataclass(slots=True)
class Results:
    d7a_rate: float = 0.0
    entry_rate: float = 0.0
    e2e_rate: float = 0.0
    e2e_complete: bool = False
    p99_ms: float = 0.0
    ingest_p99_ms: float = 0.0
    in_redis_p99_ms: float = 0.0
    handoff_within_1ms: str = "-"
    rss_mb: dict[str, float] = field(default_factory=dict)
    backlog_s: float = 0.0


class Gateway:
    """The three services as processes on the private Redis and broker, reading `line`."""

    def __init__(
        self, supervisor: Supervisor, redis: PrivateRedis, broker: PrivateBroker, line: ModemLine
    ) -> None:
        self.supervisor = supervisor
        self.redis = redis
        self.broker = broker
        self.line = line
        supervisor.env.update(
            GATEWAY_REDIS_URL=redis.url,
            GATEWAY_STREAM_PREFIX=PREFIX,
            GATEWAY_LOG_FORMAT="json",
            GATEWAY_LOG_LEVEL="info",
        )
        self.ingest_metrics_port = free_port()

    @property
    def work_dir(self) -> Path:
        return self.supervisor.log_dir

    def start(self, name: str) -> Child:
        extra: dict[str, str] = {
            "gateway-ingest": {
                "GATEWAY_SERIAL_PORT": self.line.path,
                "GATEWAY_METRICS_PORT": str(self.ingest_metrics_port),
            },
            "gateway-decoder": {"GATEWAY_CONSUMER_NAME": "bench-decoder-1"},
            "gateway-publisher": {
                "GATEWAY_CONSUMER_NAME": "bench-publisher",
                "GATEWAY_MQTT_HOST": LOOPBACK,
                "GATEWAY_MQTT_PORT": str(self.broker.port),
                "GATEWAY_MQTT_TLS": "false",
                "GATEWAY_MQTT_CLIENT_ID": f"bench-gateway-{os.getpid()}",
                "GATEWAY_PROJECT_ID": PROJECT_ID,
                "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
                "GATEWAY_TOPIC_ROOT": TOPIC_ROOT,
            },
        }[name]
        return self.supervisor.start_service(name, **extra)

    def stop(self, name: str) -> None:
        self.supervisor.stop(name)

    def wait_log(self, name: str, event: str) -> None:
        self.supervisor.wait_log(name, f'"{event}"')

    def child(self, name: str) -> Child:
        return self.supervisor.current(name)

    def running(self) -> list[Child]:
        """The services started and not stopped, in their order."""
        latest = self.supervisor.latest
        return [latest[n] for n in SERVICES if n in latest and not latest[n].stopped]


@dataclass(frozen=True, slots=True)
class Context:
    """What every measurement on the running gateway works with."""

    options: Options
    results: Results
    gateway: Gateway
    client: redis.Redis
    sub_factory: Callable[[str], Subscriber]
    receive_maximum: int | None


def log_value(child: Child, event: str, key: str) -> Any:
    """`key` of the first JSON log line of `event` (None if there is none)."""
    for line in child.log().splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get("event") == event:
                return obj.get(key)
    return None
