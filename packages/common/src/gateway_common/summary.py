"""One `summary` log line per interval: what the service did since the last one.

Read from the service's own Prometheus registry (only the `gateway_*` metrics), so every service
gets it without code of its own: counters as the increase since the previous summary, histograms
as the count of observations since then, gauges as their current value. A labelled metric is a
map from label values to numbers. The interval is `GATEWAY_LOG_SUMMARY_INTERVAL_S` (default 60,
0 turns it off).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from pydantic import Field

from gateway_common.logs import get_logger
from gateway_common.settings import CommonSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from gateway_common.lifecycle import StopSignal

__all__ = ["LogSummary", "SummarySettings", "start_log_summary"]

log = get_logger(__name__)

PREFIX = "gateway_"

Key = tuple[str, tuple[tuple[str, str], ...]]


class SummarySettings(CommonSettings):
    log_summary_interval_s: float = Field(60.0, ge=0)
    """Seconds between two `summary` log lines; 0 turns them off."""


def _label_text(labels: tuple[tuple[str, str], ...]) -> str:
    return ",".join(value for _name, value in labels)


class LogSummary:
    """Turns the registry's `gateway_*` metrics into the fields of one summary event."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._last: dict[Key, float] = {}

    def _read(self) -> tuple[dict[Key, float], dict[Key, float]]:
        """(cumulative counts: counters and histogram counts, current gauge values)."""
        counts: dict[Key, float] = {}
        gauges: dict[Key, float] = {}
        for family in self._registry.collect():
            if not family.name.startswith(PREFIX):
                continue
            short = family.name.removeprefix(PREFIX)
            for sample in family.samples:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                if family.type == "counter" and sample.name.endswith("_total"):
                    counts[(short, labels)] = sample.value
                elif family.type == "histogram" and sample.name.endswith("_count"):
                    counts[(short + "_count", labels)] = sample.value
                elif family.type == "gauge":
                    gauges[(short, labels)] = sample.value
        return counts, gauges

    def fields(self) -> dict[str, Any]:
        """The summary since the previous call (the first call covers the whole run)."""
        counts, gauges = self._read()
        out: dict[str, Any] = {}
        for key, value in counts.items():
            delta = value - self._last.get(key, 0.0)
            _put(out, key, delta)
        for key, value in gauges.items():
            _put(out, key, value)
        self._last = counts
        return out


def _number(value: float) -> int | float:
    value = float(value)  # a custom collector may give ints (no is_integer before 3.12)
    return int(value) if value.is_integer() else round(value, 3)


def _put(out: dict[str, Any], key: Key, value: float) -> None:
    name, labels = key
    if not labels:
        out[name] = _number(value)
        return
    by_label = out.setdefault(name, {})
    if isinstance(by_label, dict):
        by_label[_label_text(labels)] = _number(value)


def start_log_summary(
    registry: CollectorRegistry, stop: StopSignal, interval_s: float
) -> Callable[[], None]:
    """Log a `summary` event every `interval_s` until `stop`; returns a function that joins."""
    if interval_s <= 0:
        return lambda: None
    summary = LogSummary(registry)
    summary.fields()  # the baseline: the first line covers its own interval

    def run() -> None:
        while not stop.wait(interval_s):
            log.info("summary", interval_s=interval_s, **summary.fields())

    thread = threading.Thread(target=run, name="log-summary", daemon=True)
    thread.start()
    return lambda: thread.join(timeout=1.0)
