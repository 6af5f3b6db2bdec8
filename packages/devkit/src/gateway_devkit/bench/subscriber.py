"""The bench's subscriber: `mosquitto_sub` in a process of its own, one line per DDATA with its
arrival time. A C client outside the bench's process: it costs little CPU, takes no GIL from
the measurements, and its CPU is counted apart (gateway_devkit.mqtt_watch is the tests' one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_devkit.bench.frames import ACTIVE_PHASE_1
from gateway_devkit.bench.harness import POLL_S, STALL_TIMEOUT_S, TOPIC_ROOT, BenchError
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import START_TIMEOUT_S
from gateway_devkit.servers import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_devkit.processes import Child, Supervisor


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float
    seq: int


class Subscriber:
    """`mosquitto_sub` on the private broker, one line per DDATA: arrival time, topic, payload."""

    def __init__(self, supervisor: Supervisor, binary: str, port: int, name: str) -> None:
        self._supervisor = supervisor
        self.out_path = supervisor.log_dir / f"{name}.out"
        self._probe_topic = f"{TOPIC_ROOT}/probe/{name}"
        argv = [
            *(["stdbuf", "-oL"] if shutil.which("stdbuf") else []),
            binary,
            "-V", "mqttv5",
            "-h", LOOPBACK,
            "-p", str(port),
            "-q", "1",
            "-i", f"bench-sub-{name}-{os.getpid()}",
            "-t", f"{TOPIC_ROOT}/+/DDATA/#",
            "-t", self._probe_topic,
            "-F", "%U %t %p",
        ]  # fmt: skip
        self.child = supervisor.start(name, argv, stdout=self.out_path)
        self._offset = 0
        self._tail = b""
        self.ddata = 0
        self._port = port

    def wait_subscribed(self, pub_binary: str) -> None:
        """Publish probes until one comes back: the subscription is in place."""
        probe = [pub_binary, "-h", LOOPBACK, "-p", str(self._port), "-t", self._probe_topic]
        probe += ["-m", "probe", "-q", "1"]

        def probe_came_back() -> bool:
            subprocess.run(probe, check=False, capture_output=True, timeout=START_TIMEOUT_S)
            time.sleep(0.1)
            if self.out_path.read_bytes().count(self._probe_topic.encode()):
                return True
            self._supervisor.check_alive(self.child)
            return False

        if not wait_until(probe_came_back, START_TIMEOUT_S, interval_s=0):
            raise BenchError("the subscriber never saw its probe message")

    def poll(self) -> int:
        """Count the DDATA lines written since the last poll; the total so far."""
        with self.out_path.open("rb") as out:
            out.seek(self._offset)
            data = out.read()
        self._offset += len(data)
        data = self._tail + data
        complete, _, self._tail = data.rpartition(b"\n")
        self.ddata += complete.count(b"/DDATA/")
        return self.ddata

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
            if b"/DDATA/" not in topic:
                continue
            metrics = json.loads(payload)["metrics"]
            seq = next(m["value"] for m in metrics if m["name"] == ACTIVE_PHASE_1)
            found.append(Delivery(float(stamp), int(seq)))
        return found

    def stop(self) -> None:
        self._supervisor.stop(self.child)
