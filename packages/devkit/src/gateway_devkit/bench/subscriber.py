"""The bench's subscriber: `mosquitto_sub` in a process of its own, one line per DDATA with its
arrival time. A C client outside the bench's process: it costs little CPU, takes no GIL from
the measurements, and its CPU is counted apart (gateway_devkit.mqtt_watch is the tests' one)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_devkit.bench.frames import ACTIVE_PHASE_1
from gateway_devkit.bench.harness import POLL_S, STALL_TIMEOUT_S, TOPIC_ROOT, BenchError
from gateway_devkit.mosquitto_sub import DDATA, MosquittoSub, SubscriberError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_devkit.processes import Child, Supervisor


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float
    seq: int


class Subscriber(MosquittoSub):
    """`mosquitto_sub` on the private broker, one line per DDATA: arrival time, topic, payload."""

    def __init__(self, supervisor: Supervisor, port: int, name: str) -> None:
        super().__init__(supervisor, port, TOPIC_ROOT, name, "%U %t %p")

    def wait_subscribed(self) -> None:
        try:
            super().wait_subscribed()
        except SubscriberError as exc:
            raise BenchError(str(exc)) from exc

    def poll(self) -> int:
        """Count the DDATA lines written since the last poll; the total so far."""
        return self.count()

    def wait_for(self, count: int, watched: Sequence[Child]) -> bool:
        """Wait until `count` DDATA arrived; False when none arrived for STALL_TIMEOUT_S."""
        last, last_change = self.poll(), time.monotonic()
        while last < count:
            time.sleep(POLL_S)
            self._supervisor.check_alive(*watched)
            now_count = self.poll()
            if now_count != last:
                last, last_change = now_count, time.monotonic()
            elif time.monotonic() - last_change > STALL_TIMEOUT_S:
                return False
        return True

    def deliveries(self) -> list[Delivery]:
        """Every DDATA received, with its frame's sequence number (read after the run)."""
        found: list[Delivery] = []
        for line in self.out_path.read_bytes().splitlines():
            stamp, _, rest = line.partition(b" ")
            topic, _, payload = rest.partition(b" ")
            if DDATA not in topic:
                continue
            metrics = json.loads(payload)["metrics"]
            seq = next(m["value"] for m in metrics if m["name"] == ACTIVE_PHASE_1)
            found.append(Delivery(float(stamp), int(seq)))
        return found
