"""What the publisher sends, as the demo reads it: the DBIRTH and DDATA of its project, from an
MQTT watch on `mqtts/demo/#`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway_devkit.demo.infrastructure import EDGE_NODE_ID, PROJECT_ID, TOPIC_ROOT, DemoError
from gateway_devkit.mqtt_watch import MqttWatch

if TYPE_CHECKING:
    from gateway_devkit.demo.infrastructure import Infrastructure

ACTIVE_ENERGY = tuple(f"Énergie active/Phase {p}" for p in (1, 2, 3))
VOLTAGE = tuple(f"Tension/Phase {p}" for p in (1, 2, 3))
SIGNAL = "Force du signal radio DASH7"
BUTTON = "Bouton pressé"
LINK_OK = "État de la liaison Modbus - DASH7"


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # DBIRTH / DDATA
    device_id: str
    metrics: dict[str, Any]
    timestamp_ms: int | None


def parse_message(topic: str, payload: bytes) -> Message | None:
    """A DBIRTH or DDATA of the demo's project, or None for anything else."""
    levels = topic.split("/")
    if len(levels) != 5 or levels[3] != EDGE_NODE_ID or levels[2] not in {"DBIRTH", "DDATA"}:
        return None
    try:
        metrics = json.loads(payload)["metrics"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(metrics, list):
        return None
    values: dict[str, Any] = {
        str(m["name"]): m.get("value") for m in metrics if isinstance(m, dict) and "name" in m
    }
    stamps = [m["timestamp"] for m in metrics if isinstance(m, dict) and "timestamp" in m]
    return Message(levels[2], levels[4], values, max(stamps, default=None))


class Viewer:
    """The demo's subscription to `mqtts/demo/#`: this run's messages, one at a time. Retained
    messages were kept by the broker from an earlier run: counted, not shown."""

    def __init__(self, infra: Infrastructure) -> None:
        self.stale_retained = 0
        self.birth_topics: set[str] = set()
        where = f"MQTT broker {infra.mqtt_host}:{infra.mqtt_port}"
        try:
            self._watch = MqttWatch(
                infra.mqtt_host,
                infra.mqtt_port,
                f"{TOPIC_ROOT}/{PROJECT_ID}/#",
                client_id=f"demo-viewer-{os.getpid()}",
                keepalive_s=30,
                keep=False,
            )
        except TimeoutError as exc:  # before OSError: a TimeoutError is one
            raise DemoError(f"no subscription acknowledged by the {where}") from exc
        except OSError as exc:
            raise DemoError(f"cannot connect to the {where}: {exc}") from exc

    def next(self, timeout_s: float) -> Message | None:
        """The next message of this run within `timeout_s`, if any."""
        for received in self._watch.take(1, max(0.0, timeout_s)):
            if received.retain:
                self.stale_retained += 1
                continue
            message = parse_message(received.topic, received.payload)
            if message is not None and message.kind == "DBIRTH":
                self.birth_topics.add(received.topic)
            return message
        return None

    def close(self) -> None:
        """Clear the retained DBIRTHs of this run, then disconnect."""
        self._watch.clear_retained(self.birth_topics)
        self._watch.close()
