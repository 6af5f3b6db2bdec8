"""Fixtures for gatewayctl's tests: its environment, and a way to run it and read its output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from gateway_common.streams import StreamKeys
from gateway_ctl.main import main


@dataclass
class CtlResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.out.count("\n") == 1, self.out
        return json.loads(self.out)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, redis_url: str, stream_prefix: str) -> StreamKeys:
    """GATEWAY_REDIS_URL and GATEWAY_STREAM_PREFIX point gatewayctl at this test's streams."""
    monkeypatch.setenv("GATEWAY_REDIS_URL", redis_url)
    monkeypatch.setenv("GATEWAY_STREAM_PREFIX", stream_prefix)
    monkeypatch.setenv("COLUMNS", "200")
    return StreamKeys(stream_prefix)


@pytest.fixture
def ctl(capsys: pytest.CaptureFixture[str]):
    """Run `gatewayctl ARGS...` in this process; its exit code and output."""

    def run(*argv: str) -> CtlResult:
        capsys.readouterr()
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        captured = capsys.readouterr()
        return CtlResult(code, captured.out, captured.err)

    return run
