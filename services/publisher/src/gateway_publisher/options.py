"""The publisher's tuning, built from its settings by main.py."""

from __future__ import annotations

from dataclasses import dataclass

from gateway_common.devices import DEFAULT_INTERVAL_S

__all__ = ["PublisherOptions"]


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    window_messages: int = 64
    max_attempts: int = 5
    block_ms: int = 1000
    shutdown_grace_ms: int = 2000
    backlog_interval_ms: int = 5000
    device_interval_s: float = DEFAULT_INTERVAL_S
    """Reporting interval of a device whose EnergyConfigFile has not arrived (staleness)."""
    read_batch: int = 128
    """Records read and decoded ahead of the window, at most; a read refills below half."""
    ack_batch: int = 32
    """Acknowledgements written together once this many wait..."""
    ack_delay_ms: int = 10
    """...or once the oldest has waited this long (or before the loop blocks)."""
    downlink: bool = False
    """DBIRTH with metrics 16 and 17, EnergyConfigFiles as their DDATA (and DCMDs taken)."""
