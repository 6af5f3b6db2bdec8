"""`make bench` still runs, and its rig still delivers every frame it counts.

Not a timed test: nothing here looks at a rate or a latency. It runs the benchmark with tiny
counts and checks what does not depend on the machine: every section is printed, every frame of
the burst, the paced run and the backlog came out once as a DDATA, and nothing was dead-lettered.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from gateway_devkit.processes import BIN

BENCH = [str(BIN / "gateway-bench")]  # what `make bench` runs

pytestmark = [pytest.mark.integration, pytest.mark.system]

SECTIONS = (
    "## 1. decoder",
    "## 2. end to end",
    "## 3. latency at the serial line rate",
    "## 4. resident memory",
    "## 5. backlog drain",
    "## summary against issue 4's targets",
)


def cell(output: str, label: str) -> str:
    """The value column of the table row whose first column is `label`."""
    match = re.search(rf"^\| {re.escape(label)}\s+\| ([^|]+?)\s+\|", output, re.MULTILINE)
    assert match, f"no row {label!r} in:\n{output}"
    return match[1]


@pytest.mark.timeout(180)
def test_bench_runs_and_delivers_every_frame() -> None:
    done = subprocess.run(
        [
            *BENCH,
            "--quick",
            "--frames",
            "150",
            "--latency-frames",
            "40",
            "--backlog",
            "150",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = done.stdout
    assert done.returncode == 0, output[-3000:] + done.stderr[-3000:]
    for section in SECTIONS:
        assert section in output, f"missing {section!r}:\n{output}"
    assert cell(output, "DDATA received / unique / duplicates") == "150 / 150 / 0"
    assert cell(output, "every frame delivered") == "yes"
    assert cell(output, "dead letters") == "0"
    assert "delivered 40/40;" in output
    assert cell(output, "DDATA received / unique") == "150 / 150"
    assert cell(output, "records group pending + lag at the end") == "0"
    # ingest's own hand-off histogram counted every paced frame.
    assert cell(output, "frames") == "40"
    assert re.search(r"floor: bare Python reader.*\| 40 ", output), output


def test_console_bench_runs() -> None:
    """The console part of `make bench`, with a handful of devices: it seeds, starts the
    console, measures every page and cleans up (numbers are not checked)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway_devkit.bench.console", "--devices", "5", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "device plots (24 h)" in done.stdout
    assert "VmHWM" in done.stdout or "peak" in done.stdout, done.stdout
