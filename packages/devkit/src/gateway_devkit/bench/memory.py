"""4. Resident memory of every process the bench started, from /proc/PID/status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gateway_devkit.bench.harness import SERVICES
from gateway_devkit.bench.report import TARGET_RSS_MB, table, verdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_devkit.bench.cpu import Measured
    from gateway_devkit.bench.harness import Results


def memory_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0])
    return values


def report_memory(title: str, processes: Sequence[Measured], results: Results) -> None:
    rows = []
    for process in processes:
        if not process.alive():
            rows.append((process.name, "-", "exited", "-", "-"))
            continue
        mem = memory_kb(process.pid)
        rss, hwm = mem.get("VmRSS", 0) / 1024, mem.get("VmHWM", 0) / 1024
        target = "-"
        if process.name in SERVICES:
            results.rss_mb[process.name] = max(results.rss_mb.get(process.name, 0.0), hwm)
            target = f"≤ {TARGET_RSS_MB:g}: {verdict(hwm <= TARGET_RSS_MB)}"
        rows.append((process.name, str(process.pid), f"{rss:.1f}", f"{hwm:.1f}", target))
    table(title, ("process", "pid", "VmRSS MB", "VmHWM (peak) MB", "target"), rows)
