"""The per-interval `summary` log line, read from a service's metrics registry."""

from __future__ import annotations

import json
import threading
import time

import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway_common.command_metrics import CommandMetrics
from gateway_common.lifecycle import StopSignal
from gateway_common.logs import configure_logging
from gateway_common.summary import LogSummary, start_log_summary


def registry_with_metrics() -> tuple[CollectorRegistry, Counter, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    frames = Counter("gateway_frames_received_total", "frames", registry=registry)
    errors = Counter("gateway_serial_errors_total", "errors", ["kind"], registry=registry)
    connected = Gauge("gateway_serial_connected", "connected", registry=registry)
    latency = Histogram("gateway_publish_latency_seconds", "latency", registry=registry)
    Counter("other_total", "not ours", registry=registry).inc(5)
    return registry, frames, errors, connected, latency


def test_counters_are_deltas_gauges_are_values() -> None:
    registry, frames, errors, connected, latency = registry_with_metrics()
    summary = LogSummary(registry)
    frames.inc(3)
    errors.labels(kind="crc").inc()
    connected.set(1)
    latency.observe(0.2)
    latency.observe(0.3)
    assert summary.fields() == {
        "frames_received": 3,
        "serial_errors": {"crc": 1},
        "serial_connected": 1,
        "publish_latency_seconds_count": 2,
    }
    frames.inc(2)
    errors.labels(kind="sync").inc(4)
    connected.set(0)
    assert summary.fields() == {
        "frames_received": 2,
        "serial_errors": {"crc": 0, "sync": 4},
        "serial_connected": 0,
        "publish_latency_seconds_count": 0,
    }


def test_a_collector_counting_in_integers_is_summed_too() -> None:
    """A custom collector may report ints (the downlink's totals, read from Redis): int - int is
    an int, which has no is_integer() before Python 3.12. Found by a run longer than two
    summary intervals: ingest's summary thread died with a traceback."""
    registry = CollectorRegistry()
    metrics = CommandMetrics(registry)
    summary = LogSummary(registry)
    metrics.set_totals({"queued": 2})
    assert summary.fields()["commands"]["queued"] == 2
    metrics.set_totals({"queued": 5})
    assert summary.fields()["commands"]["queued"] == 3


@pytest.fixture
def json_logs():
    configure_logging("test", "info", "json")
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_one_summary_line_per_interval(capsys: pytest.CaptureFixture[str], json_logs) -> None:
    registry, frames, _errors, _connected, _latency = registry_with_metrics()
    frames.inc(7)  # before the start: not part of the first interval
    stop = StopSignal()
    join = start_log_summary(registry, stop, 0.2)
    frames.inc(2)
    time.sleep(0.5)
    stop.set()
    join()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    summaries = [line for line in lines if line["event"] == "summary"]
    assert 1 <= len(summaries) <= 3  # 0.5 s at 0.2 s intervals: fewer on a loaded machine
    assert summaries[0]["level"] == "info"
    assert summaries[0]["frames_received"] == 2
    assert all(s["frames_received"] == 0 for s in summaries[1:])
    assert summaries[0]["interval_s"] == 0.2


def test_zero_turns_it_off() -> None:
    stop = StopSignal()
    join = start_log_summary(CollectorRegistry(), stop, 0)
    assert "log-summary" not in {t.name for t in threading.enumerate()}
    join()
