"""Optional py-spy recordings of the services during a measurement (`--py-spy PATH`), summarised
as self time and inclusive time per function."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from gateway_devkit.bench.report import table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_devkit.processes import Child, Supervisor


class Profiler:
    """py-spy recordings of the services (raw collapsed stacks), summarised after."""

    def __init__(self, supervisor: Supervisor, binary: str | None, label: str) -> None:
        self._supervisor = supervisor
        self._binary = binary
        self._label = label
        self._running: list[tuple[Child, Path, str]] = []

    def start(self, children: Sequence[Child]) -> None:
        if self._binary is None:
            return
        for child in children:
            out = self._supervisor.log_dir / f"profile-{self._label}-{child.name}.txt"
            argv = [
                self._binary,
                "record",
                "--pid", str(child.pid),
                "--format", "raw",
                "--rate", "200",
                "--nonblocking",
                "--gil",
                "--output", str(out),
            ]  # fmt: skip
            spy = self._supervisor.start(f"py-spy-{self._label}-{child.name}", argv)
            self._running.append((spy, out, child.name))

    def stop_and_report(self) -> None:
        for spy, out, name in self._running:
            self._supervisor.stop(spy, signal.SIGINT, timeout_s=20)
            if out.exists():
                summarise_profile(out, f"{self._label}: {name}")
        self._running.clear()


def summarise_profile(path: Path, title: str, top: int = 10) -> None:
    """Self time by function, and time inside a few functions of the gateway."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames or any("importlib" in f for f in frames):
            continue  # start-up (imports) is not what is being measured
        total += count
        leaf[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return
    rows = [(f"{100 * n / total:.1f} %", name) for name, n in leaf.most_common(top)]
    table(
        f"profile, {title}: self time ({total} samples holding the GIL, all threads)",
        ("share", "where"),
        rows,
    )
    ours = [
        (f"{100 * n / total:.1f} %", name)
        for name, n in inclusive.most_common()
        if "gateway_" in name or "redis/" in name or "paho" in name
    ][:top]
    table(f"profile, {title}: inclusive time", ("share", "function"), ours)


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`, keeping the package for ours."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"
