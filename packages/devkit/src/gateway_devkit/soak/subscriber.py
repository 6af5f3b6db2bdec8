"""The soak's subscriber: `mosquitto_sub` writing one line per DDATA, its topic only (a million
payloads would fill the disk; the topic names the device)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from gateway_devkit.mosquitto_sub import DDATA, MosquittoSub, SubscriberError

if TYPE_CHECKING:
    from gateway_devkit.processes import Supervisor

__all__ = ["CountingSubscriber", "SubscriberError"]


class CountingSubscriber(MosquittoSub):
    """Subscribes (QoS 1) to every DDATA under `topic_root` on the broker at `port`."""

    def __init__(self, supervisor: Supervisor, port: int, topic_root: str, name: str) -> None:
        super().__init__(supervisor, port, topic_root, name, "%t")

    def per_device(self) -> Counter[str]:
        """DDATA received per device (the last level of the topic)."""
        counts: Counter[str] = Counter()
        with self.out_path.open("rb") as out:
            for line in out:
                if DDATA in line:
                    counts[line.rstrip(b"\n").rpartition(b"/")[2].decode()] += 1
        return counts
