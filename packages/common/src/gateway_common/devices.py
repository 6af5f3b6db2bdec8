"""A device's registry entry in `{p}:devices`, and when a device counts as stale.

The publisher writes the entries (device id -> msgpack map); gatewayctl reads them. Both decide
staleness here, with one rule: a device is stale when it has been silent for more than
`STALE_FACTOR` times its reporting interval. The interval is the one its EnergyConfigFile
announced (`interval_s`), or `GATEWAY_DEVICE_INTERVAL_S` (default 600 s) until one arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from gateway_common.entries import Addressing

__all__ = [
    "DEFAULT_INTERVAL_S",
    "STALE_FACTOR",
    "DeviceEntry",
    "RegistryError",
    "is_stale",
    "silence_limit_s",
]

DEFAULT_INTERVAL_S: Final = 600.0
"""Reporting interval assumed for a device that has not sent its EnergyConfigFile."""
STALE_FACTOR: Final = 3


class RegistryError(ValueError):
    """A registry entry that cannot be read."""


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    first_seen: float
    """Receive time (epoch seconds) of the device's first record handled by the publisher."""
    last_seen: float
    readings: int
    """Records of this device handled (published, or acknowledged for configuration files)."""
    last_link_budget: int
    """Link budget of the most recently received record (records may be acknowledged out of
    order: a configuration file is acknowledged before the readings still in flight)."""
    interval_s: float | None = None
    """Reporting interval from the device's last EnergyConfigFile; None until one arrives."""
    enabled: bool | None = None
    """`enabled` from the device's last EnergyConfigFile; None until one arrives."""
    addressing: Addressing | None = None
    """Address type, access class and NLS method of the device's last record (its D7 status):
    what ingest copies into a downlink command's addressee. None until such a record arrives."""

    def to_bytes(self) -> bytes:
        entry: dict[str, Any] = {
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "readings": self.readings,
            "last_link_budget": self.last_link_budget,
        }
        if self.interval_s is not None:
            entry["interval_s"] = self.interval_s
        if self.enabled is not None:
            entry["enabled"] = self.enabled
        if self.addressing is not None:
            entry["addressing"] = list(self.addressing)
        packed: bytes = msgpack.packb(entry, use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceEntry:
        try:
            obj: Any = msgpack.unpackb(data, raw=False)
            interval = obj.get("interval_s")
            enabled = obj.get("enabled")
            addressing = obj.get("addressing")
            return cls(
                first_seen=float(obj["first_seen"]),
                last_seen=float(obj["last_seen"]),
                readings=int(obj["readings"]),
                last_link_budget=int(obj["last_link_budget"]),
                interval_s=None if interval is None else float(interval),
                enabled=None if enabled is None else bool(enabled),
                addressing=None if addressing is None else Addressing(*map(int, addressing)),
            )
        except (
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ) as exc:
            raise RegistryError(f"unreadable device entry: {exc}") from exc


def silence_limit_s(entry: DeviceEntry, default_interval_s: float = DEFAULT_INTERVAL_S) -> float:
    """How long the device may stay silent before it is stale."""
    interval = entry.interval_s or default_interval_s
    return STALE_FACTOR * interval


def is_stale(
    entry: DeviceEntry, now: float, default_interval_s: float = DEFAULT_INTERVAL_S
) -> bool:
    """Silent (no record received) for more than `STALE_FACTOR` reporting intervals at `now`."""
    return now - entry.last_seen > silence_limit_s(entry, default_interval_s)
