"""The downlink's metrics: `gateway_commands_total{state}` and `gateway_commands_in_flight`.

Commands change state in several processes (a source, ingest, the decoder, gatewayctl), so the
totals are counted where every change is made, in Redis (`{p}:commands:entered`, by the
transition scripts of command_store.py), and exposed by one service, ingest, from the copy its
downlink loop refreshes: a scrape never waits on Redis, and no total is counted twice across
processes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily

from gateway_common.commands import CommandState

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["CommandMetrics"]


class CommandMetrics:
    """Registered in `registry`: the totals by state, and the commands the modem holds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {state.value: 0 for state in CommandState}
        self.in_flight = Gauge(
            "gateway_commands_in_flight",
            "Downlink commands written to the modem and not answered yet (state sent)",
            registry=registry,
        )
        registry.register(self)

    def set_totals(self, entered: Mapping[str, int]) -> None:
        """The counts of `{p}:commands:entered`, as last read from Redis."""
        with self._lock:
            for state, count in entered.items():
                # a total never goes down (Redis restarted empty: keep the last one shown)
                self._totals[state] = max(self._totals.get(state, 0), count)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "gateway_commands", "Downlink commands that entered each state", labels=["state"]
        )

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "gateway_commands",
            "Downlink commands that entered each state (every source and service, from Redis)",
            labels=["state"],
        )
        with self._lock:
            for state, count in sorted(self._totals.items()):
                family.add_metric([state], count)
        yield family
