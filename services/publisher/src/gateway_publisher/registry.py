"""The device registry: durable facts per device, and which devices got their DBIRTH.

The durable part lives in the Redis hash `{p}:devices` (device id -> msgpack map); the publisher
is its only writer, so it keeps a copy in memory and writes each changed entry together with the
acknowledgement of the record that changed it. Which devices got their DBIRTH is state of the
current MQTT connection only: it is cleared whenever a new connection comes up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway_common.devices import DeviceEntry, RegistryError, is_stale

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from gateway_common.entries import Record

__all__ = ["DeviceEntry", "DeviceRegistry", "RegistryError"]


def _interval_s(record: Record, old: float | None) -> float | None:
    """The reporting interval an EnergyConfigFile announces; otherwise the one known."""
    if record.kind == "energy_config":
        interval = record.fields.get("interval_s")
        if isinstance(interval, int) and not isinstance(interval, bool) and interval > 0:
            return float(interval)
    return old


def _enabled(record: Record, old: bool | None) -> bool | None:
    """`enabled` as an EnergyConfigFile announces it; otherwise the one known."""
    if record.kind == "energy_config":
        enabled = record.fields.get("enabled")
        if isinstance(enabled, bool):
            return enabled
    return old


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
                    record.received_at,
                    record.received_at,
                    1,
                    record.link_budget,
                    _interval_s(record, None),
                    _enabled(record, None),
                    record.addressing,
                )
            else:
                newest = record.received_at >= old.last_seen
                changed[record.device_id] = DeviceEntry(
                    first_seen=min(old.first_seen, record.received_at),
                    last_seen=record.received_at if newest else old.last_seen,
                    readings=old.readings + 1,
                    last_link_budget=record.link_budget if newest else old.last_link_budget,
                    interval_s=(
                        _interval_s(record, old.interval_s)
                        if newest or old.interval_s is None
                        else old.interval_s
                    ),
                    enabled=(
                        _enabled(record, old.enabled)
                        if newest or old.enabled is None
                        else old.enabled
                    ),
                    addressing=(
                        record.addressing
                        if record.addressing is not None and (newest or old.addressing is None)
                        else old.addressing
                    ),
                )
        return changed

    def commit(self, changed: Mapping[str, DeviceEntry]) -> None:
        """Adopt entries once they are written to Redis."""
        self._entries.update(changed)

    def stale_flags(self, now: float, default_interval_s: float) -> dict[str, bool]:
        """Whether each known device is stale at `now` (see gateway_common.devices)."""
        return {
            device_id: is_stale(entry, now, default_interval_s)
            for device_id, entry in self._entries.items()
        }

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
