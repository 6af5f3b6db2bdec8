"""The device registry: durable facts per device, and which devices got their DBIRTH.

The durable part lives in the Redis hash `{p}:devices` (device id -> msgpack map); the publisher
is its only writer, so it keeps a copy in memory and writes each changed entry together with the
acknowledgement of the record that changed it. Which devices got their DBIRTH is state of the
current MQTT connection only: it is cleared whenever a new connection comes up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from gateway_common.entries import Record

__all__ = ["DeviceEntry", "DeviceRegistry", "RegistryError"]


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

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "first_seen": self.first_seen,
                "last_seen": self.last_seen,
                "readings": self.readings,
                "last_link_budget": self.last_link_budget,
            },
            use_bin_type=True,
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceEntry:
        try:
            obj: Any = msgpack.unpackb(data, raw=False)
            return cls(
                first_seen=float(obj["first_seen"]),
                last_seen=float(obj["last_seen"]),
                readings=int(obj["readings"]),
                last_link_budget=int(obj["last_link_budget"]),
            )
        except (ValueError, TypeError, KeyError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise RegistryError(f"unreadable device entry: {exc}") from exc


class DeviceRegistry:
    def __init__(self, entries: Mapping[str, DeviceEntry] | None = None) -> None:
        self._entries: dict[str, DeviceEntry] = dict(entries or {})
        self._born: set[str] = set()

    def load(self, raw: Mapping[str, bytes]) -> list[str]:
        """Replace the entries with the Redis hash's; returns the unreadable ids (skipped)."""
        entries: dict[str, DeviceEntry] = {}
        bad: list[str] = []
        for device_id, data in raw.items():
            try:
                entries[device_id] = DeviceEntry.from_bytes(data)
            except RegistryError:
                bad.append(device_id)
        self._entries = entries
        return bad

    def get(self, device_id: str) -> DeviceEntry | None:
        return self._entries.get(device_id)

    def __len__(self) -> int:
        return len(self._entries)

    def updated(self, records: Iterable[Record]) -> dict[str, DeviceEntry]:
        """The entries as they will be after `records`, without changing the registry."""
        changed: dict[str, DeviceEntry] = {}
        for record in records:
            old = changed.get(record.device_id) or self._entries.get(record.device_id)
            if old is None:
                changed[record.device_id] = DeviceEntry(
                    record.received_at, record.received_at, 1, record.link_budget
                )
            else:
                newest = record.received_at >= old.last_seen
                changed[record.device_id] = DeviceEntry(
                    first_seen=min(old.first_seen, record.received_at),
                    last_seen=record.received_at if newest else old.last_seen,
                    readings=old.readings + 1,
                    last_link_budget=record.link_budget if newest else old.last_link_budget,
                )
        return changed

    def commit(self, changed: Mapping[str, DeviceEntry]) -> None:
        """Adopt entries once they are written to Redis."""
        self._entries.update(changed)

    # ---- per-connection DBIRTH state

    def needs_birth(self, device_id: str) -> bool:
        return device_id not in self._born

    def mark_born(self, device_id: str) -> None:
        self._born.add(device_id)

    def forget_birth(self, device_id: str) -> None:
        """The DBIRTH was refused: send it again before the device's next DDATA."""
        self._born.discard(device_id)

    def new_connection(self) -> None:
        self._born.clear()
