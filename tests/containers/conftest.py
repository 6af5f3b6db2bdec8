"""Fixtures of the container tests (`make container-test`): one clean export of the commit,
the gateway image built from it once, and a report of what was measured."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from compose_project import IMAGE, REPORT, Project, docker, export_commit, image_size_mb, report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("container measurements")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a user's clone holds: the commit's tracked files, and nothing else."""
    return export_commit(tmp_path_factory.mktemp("export") / "dash7-gateway")


@pytest.fixture(scope="session")
def image(export: Path) -> str:
    """The project's own Dockerfile, unchanged, built by Compose with BuildKit."""
    builder = Project(export, profile="demo")
    started = time.monotonic()
    builder.compose("build", "publisher-demo", timeout_s=900)
    took = time.monotonic() - started
    venv = docker("run", "--rm", IMAGE, "du", "-sm", "/opt/venv").stdout.split()[0]
    size = image_size_mb(IMAGE)
    report(f"image {IMAGE}: {size:.0f} MB ({venv} MB of it /opt/venv), built in {took:.0f} s")
    return IMAGE
