"""CPU time from /proc: of each process the bench watches, of the bench itself, and of the
whole machine (what else ran meanwhile, and the hypervisor's steal)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

CLK_TCK = os.sysconf("SC_CLK_TCK")
ITSELF = "gateway-bench itself"


class Measured(Protocol):
    """A child process or a private server."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    with Path("/proc/stat").open(encoding="utf-8") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU used by each watched process, and by the rest of the machine, between start/stop."""

    def __init__(self, watched: Sequence[Measured]) -> None:
        self._watched = list(watched)
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self._machine0 = (0.0, 0.0)
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self.machine_busy = 0.0
        self.steal = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {w.name: cpu_seconds(w.pid) for w in self._watched}
        self._start[ITSELF] = cpu_seconds(os.getpid())
        self._machine0 = machine_cpu()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._t0
        busy, steal = machine_cpu()
        self.machine_busy, self.steal = busy - self._machine0[0], steal - self._machine0[1]
        self.used = {
            w.name: cpu_seconds(w.pid) - self._start[w.name] for w in self._watched if w.alive()
        }
        self.used[ITSELF] = cpu_seconds(os.getpid()) - self._start[ITSELF]

    def rows(self) -> list[tuple[str, str, str]]:
        rows = [
            (name, f"{used:.2f}", f"{100 * used / self.wall:.0f} %")
            for name, used in sorted(self.used.items(), key=lambda kv: -kv[1])
        ]
        others = max(0.0, self.machine_busy - sum(self.used.values()))
        cores = os.cpu_count() or 1
        rows += [
            (
                "other processes (not started by the bench)",
                f"{others:.2f}",
                f"{100 * others / self.wall:.0f} %",
            ),
            (
                f"whole machine busy ({cores} cores = {100 * cores} %)",
                f"{self.machine_busy:.2f}",
                f"{100 * self.machine_busy / self.wall:.0f} %",
            ),
            ("steal (hypervisor)", f"{self.steal:.2f}", f"{100 * self.steal / self.wall:.0f} %"),
        ]
        return rows
