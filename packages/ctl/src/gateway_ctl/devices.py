"""`gatewayctl devices`: every device in the registry, with its staleness.

Staleness is decided by `gateway_common.devices.is_stale`, the rule the publisher's
`gateway_device_stale` gauge uses too, against the Redis server's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.table import Table

from gateway_common.devices import DeviceEntry, RegistryError, is_stale, silence_limit_s
from gateway_ctl.output import as_text, iso_time, redis_now

if TYPE_CHECKING:
    import redis
    from rich.console import Console

    from gateway_common.streams import StreamKeys

__all__ = ["DeviceRow", "collect_devices", "count_stale", "render_devices"]


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    entry: DeviceEntry | None
    """None when the registry entry cannot be read."""
    stale: bool
    silent_s: float | None
    stale_after_s: float | None

    def as_json(self) -> dict[str, Any]:
        if self.entry is None:
            return {"device_id": self.device_id, "error": "unreadable registry entry"}
        entry = self.entry
        return {
            "device_id": self.device_id,
            "first_seen": entry.first_seen,
            "last_seen": entry.last_seen,
            "readings": entry.readings,
            "last_link_budget": entry.last_link_budget,
            "interval_s": entry.interval_s,
            "silent_s": self.silent_s,
            "stale_after_s": self.stale_after_s,
            "stale": self.stale,
        }


def collect_devices(
    client: redis.Redis, keys: StreamKeys, default_interval_s: float
) -> list[DeviceRow]:
    """The registry's devices, sorted by id, judged stale or not at the Redis server's time."""
    raw: Any = client.hgetall(keys.devices)
    now = redis_now(client)
    rows: list[DeviceRow] = []
    for device_id, data in sorted((as_text(k), v) for k, v in raw.items()):
        try:
            entry = DeviceEntry.from_bytes(data)
        except RegistryError:
            rows.append(DeviceRow(device_id, None, stale=False, silent_s=None, stale_after_s=None))
            continue
        rows.append(
            DeviceRow(
                device_id,
                entry,
                stale=is_stale(entry, now, default_interval_s),
                silent_s=round(max(0.0, now - entry.last_seen), 3),
                stale_after_s=silence_limit_s(entry, default_interval_s),
            )
        )
    return rows


def count_stale(rows: list[DeviceRow]) -> int:
    return sum(1 for row in rows if row.stale)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render_devices(rows: list[DeviceRow], console: Console) -> None:
    table = Table(title=f"devices ({len(rows)}, {count_stale(rows)} stale)", title_justify="left")
    for column in ("device", "first seen", "last seen"):
        table.add_column(column)
    for column in ("silent", "link budget", "readings", "interval"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for row in rows:
        entry = row.entry
        if entry is None:
            table.add_row(row.device_id, "[red]unreadable entry[/red]")
            continue
        interval = "default" if entry.interval_s is None else _duration(entry.interval_s)
        state = "[bold red]STALE[/bold red]" if row.stale else "[green]ok[/green]"
        table.add_row(
            row.device_id,
            iso_time(entry.first_seen, "seconds"),
            iso_time(entry.last_seen, "seconds"),
            _duration(row.silent_s),
            str(entry.last_link_budget),
            str(entry.readings),
            interval,
            state,
        )
    console.print(table)
