"""Helpers for the operations tests: running gatewayctl (scraping /metrics, free ports and
waiting are in gateway_devkit)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from gateway_devkit.processes import BIN


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
