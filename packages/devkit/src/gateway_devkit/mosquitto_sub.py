"""`mosquitto_sub` in a process of its own, subscribed (QoS 1, MQTT v5) to every DDATA under a
topic root, writing one line per message in a format of the caller's to `{name}.out`.

A C client outside the caller's process: it keeps up at little CPU, takes no GIL from a
measurement, and its CPU is counted apart. The bench and the soak count and read its lines;
gateway_devkit.mqtt_watch is the tests' in-process subscriber.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from gateway_devkit.polling import wait_until
from gateway_devkit.processes import START_TIMEOUT_S
from gateway_devkit.servers import LOOPBACK, find_binary

if TYPE_CHECKING:
    from pathlib import Path

    from gateway_devkit.processes import Child, Supervisor

__all__ = ["DDATA", "MosquittoSub", "SubscriberError"]

DDATA = b"/DDATA/"


class SubscriberError(RuntimeError):
    """mosquitto_sub is missing, or never saw its own probe message."""


class MosquittoSub:
    """Subscribes to `{topic_root}/+/DDATA/#` on the broker at `port`; `line_format` is
    mosquitto_sub's `-F` (`%t`: the topic only; `%U %t %p`: arrival time, topic, payload)."""

    def __init__(
        self, supervisor: Supervisor, port: int, topic_root: str, name: str, line_format: str
    ) -> None:
        sub, pub = find_binary("mosquitto_sub"), find_binary("mosquitto_pub")
        if sub is None or pub is None:
            raise SubscriberError("mosquitto_sub and mosquitto_pub are needed (mosquitto-clients)")
        self._supervisor = supervisor
        self._pub = pub
        self._port = port
        self.out_path: Path = supervisor.log_dir / f"{name}.out"
        self._probe_topic = f"{topic_root}/probe/{name}"
        argv = [
            *(["stdbuf", "-oL"] if shutil.which("stdbuf") else []),
            sub,
            "-V", "mqttv5",
            "-h", LOOPBACK,
            "-p", str(port),
            "-q", "1",
            "-i", f"{name}-{os.getpid()}",
            "-t", f"{topic_root}/+/DDATA/#",
            "-t", self._probe_topic,
            "-F", line_format,
        ]  # fmt: skip
        self.child: Child = supervisor.start(name, argv, stdout=self.out_path)
        self._lock = threading.Lock()
        self._offset = 0
        self._tail = b""
        self._ddata = 0

    def wait_subscribed(self) -> None:
        """Publish probes until one comes back: the subscription is in place."""
        probe = [self._pub, "-h", LOOPBACK, "-p", str(self._port), "-t", self._probe_topic]
        probe += ["-m", "probe", "-q", "1"]

        def probe_came_back() -> bool:
            subprocess.run(probe, check=False, capture_output=True, timeout=START_TIMEOUT_S)
            time.sleep(0.1)
            if self._probe_topic.encode() in self.out_path.read_bytes():
                return True
            self._supervisor.check_alive(self.child)
            return False

        if not wait_until(probe_came_back, START_TIMEOUT_S, interval_s=0):
            raise SubscriberError("the subscriber never saw its probe message")

    def count(self) -> int:
        """The DDATA received so far (reads what was written since the last call)."""
        with self._lock:
            with self.out_path.open("rb") as out:
                out.seek(self._offset)
                data = out.read()
            self._offset += len(data)
            complete, _, self._tail = (self._tail + data).rpartition(b"\n")
            self._ddata += complete.count(DDATA)
            return self._ddata

    def stop(self) -> int:
        return self._supervisor.stop(self.child)
