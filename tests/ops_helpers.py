"""Helpers for the operations tests: scraping /metrics, running gatewayctl (free ports are in
private_servers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (sample name, sorted labels) -> value."""
    status, text = http_get(port, "/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(port: int, name: str, **labels: str) -> float | None:
    """One sample's value; None when absent or while the endpoint does not answer yet."""
    if http_get(port, "/healthz")[0] == 0:
        return None
    return scrape(port).get((name, tuple(sorted(labels.items()))))


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


@dataclass
class CtlRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def gatewayctl(env: dict[str, str], *args: str, timeout_s: float = 30) -> CtlRun:
    """Run the installed `gatewayctl` with `env` on top of this process's environment."""
    result = subprocess.run(
        [str(BIN / "gatewayctl"), *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return CtlRun(result.returncode, result.stdout, result.stderr)
