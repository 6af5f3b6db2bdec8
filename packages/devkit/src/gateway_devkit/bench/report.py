"""What the bench prints: Markdown tables, verdicts against issue 4's targets, the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# Issue 4's targets, printed next to what was measured.
TARGET_DECODER_RATIO = 500
TARGET_E2E_RATIO = 30
TARGET_P99_MS = 20.0
TARGET_RSS_MB = 60.0
TARGET_INGEST_MS = 1.0
#: d7a's rate on the energy frame as issue 4 states it ("about 150 frames per second").
ISSUE_D7A_RATE = 150.0


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    out = (done.stdout or done.stderr).strip().splitlines()
    return out[0] if out else "unknown"


def describe_machine(redis_bin: str, mosquitto_bin: str) -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln]
    mhz = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("cpu MHz")]
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8").splitlines()
    mem_total = next((ln.split(":", 1)[1].strip() for ln in meminfo if "MemTotal" in ln), "?")
    load = os.getloadavg()
    return [
        (
            "CPU",
            f"{models[0] if models else platform.processor()}"
            + (f" @ {mhz[0]} MHz" if mhz else ""),
        ),
        ("cores", f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})"),
        ("memory", mem_total),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Redis", _first_line([redis_bin, "--version"])),
        ("Mosquitto", _first_line([mosquitto_bin, "-h"])),
        ("load average at start", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"),
    ]


def bytecode_state() -> str:
    """Whether the services import precompiled bytecode, as in the image (it changes their RSS)."""
    import paho.mqtt.client as paho_client  # noqa: PLC0415  # only its location is wanted

    source = Path(paho_client.__file__)
    tag = sys.implementation.cache_tag
    compiled = (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").exists()
    if compiled:
        return "precompiled in the virtualenv (make install, like the image)"
    return (
        "NOT precompiled: each service compiles its imports at start (about 15 MB more RSS); "
        "`make install` precompiles"
    )
