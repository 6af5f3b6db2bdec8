"""The demo's downlink: once the first reading is in, one DCMD (a new interval) to that device
as SCorp-io would send it, then its command's states (read from Redis) until it ends."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion

from gateway_devkit.demo.infrastructure import EDGE_NODE_ID, PROJECT_ID, TOPIC_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_devkit.demo.dashboard import Dashboard
    from gateway_devkit.demo.infrastructure import Infrastructure

__all__ = ["DownlinkDemo"]

FINAL_STATES = frozenset({"confirmed", "failed", "expired", "rejected"})


class DownlinkDemo:
    """`step(dashboard)` after each message: sends the DCMD once a device has reported, then
    says each new state of its command (`COMMAND 1 confirmed: queued +0.01 s, sent ...`)."""

    INTERVAL_S = 10

    def __init__(self, infra: Infrastructure, prefix: str, say: Callable[[str], None]) -> None:
        self._infra = infra
        self._prefix = prefix
        self._say = say
        self._sent_at: float | None = None
        self._state = ""
        self.result = ""

    def step(self, dashboard: Dashboard) -> None:
        if self._sent_at is None:
            device = next((d for d, v in sorted(dashboard.devices.items()) if v.ddata), None)
            if device is not None:
                self._send(device)
            return
        if self.result:
            return
        command = self._newest_command()
        state = command.get("state", "")
        if not state or state == self._state:
            return
        self._state = state
        stamps = [("queued", "created_at"), ("sent", "sent_at")]
        stamps += [("acknowledged", "acknowledged_at"), (state, "ended_at")]
        steps = [
            f"{name} +{float(command[key]) - self._sent_at:.2f} s"
            for name, key in stamps
            if key in command
        ]
        reason = f" ({command['reason']})" if command.get("reason") else ""
        line = f"COMMAND {command['id']} {state}{reason}: " + ", ".join(steps)
        self._say(line)
        if state in FINAL_STATES:
            self.result = line

    def _newest_command(self) -> dict[str, Any]:
        client = redis.Redis.from_url(
            self._infra.redis_url, socket_timeout=2, decode_responses=True
        )
        try:
            newest: Any = client.zrevrange(f"{self._prefix}:commands:ids", 0, 0)
            found: Any = client.hgetall(f"{self._prefix}:command:{newest[0]}") if newest else {}
            return dict(found)
        finally:
            client.close()

    def _send(self, device: str) -> None:
        topic = f"{TOPIC_ROOT}/{PROJECT_ID}/DCMD/{EDGE_NODE_ID}/{device}"
        metric = {"name": "Intervalle de mesure", "dataType": "Integer", "value": self.INTERVAL_S}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-scorp-{os.getpid()}")
        client.connect(self._infra.mqtt_host, self._infra.mqtt_port, keepalive=30)
        client.loop_start()
        try:
            payload = json.dumps({"metrics": [metric]}, ensure_ascii=False).encode()
            self._sent_at = time.time()
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
        finally:
            client.loop_stop()
            client.disconnect()
        self._say(f"DCMD {topic}: Intervalle de mesure = {self.INTERVAL_S} s")
