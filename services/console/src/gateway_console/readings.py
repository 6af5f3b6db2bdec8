"""The latest energy reading of every device and how many arrived in the last 24 hours.

Kept in memory from `{p}:records` (which holds one day, `GATEWAY_RECORDS_RETENTION_S`), read
incrementally with plain XRANGE after the last entry seen: no consumer group, nothing is taken
from the publisher. The first update reads the whole window in pages; each later one only what
was appended since. Per device it keeps the newest EnergyFile record and the receive times of
the EnergyFile records of the window, as whole seconds in an array (4 bytes a reading: 576 bytes
a day for a device reporting every 10 minutes).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway_common.entries import EntryError, Record, decode_record
from gateway_common.streams import ENTRY_FIELD
from gateway_ctl.output import as_text

if TYPE_CHECKING:
    import redis

__all__ = ["WINDOW_S", "DeviceReadings", "ReadingsIndex"]

WINDOW_S: Final = 86_400.0
_PAGE: Final = 250


@dataclass(frozen=True, slots=True)
class DeviceReadings:
    latest: Record | None
    """The device's newest EnergyFile record in `{p}:records`; None when it holds none."""
    last_24h: int
    """EnergyFile records received in the last 24 hours (as far as `{p}:records` reaches)."""


class ReadingsIndex:
    """Only the refresher's thread updates it; `views` returns an immutable copy."""

    def __init__(self, stream: str, window_s: float = WINDOW_S) -> None:
        self._stream = stream
        self._window_s = window_s
        self._after: str | None = None
        self._latest: dict[str, Record] = {}
        self._times: dict[str, array[int]] = {}
        self.unreadable = 0
        """Entries of the stream that are not readable records (counted, skipped)."""

    def update(self, client: redis.Redis, now: float) -> int:
        """Read what was appended since the last update; how many entries were read."""
        start = f"{int((now - self._window_s) * 1000)}-0"
        if self._after is not None:
            start = "(" + self._after
        read = 0
        while True:
            entries: Any = client.xrange(self._stream, min=start, max="+", count=_PAGE)
            for entry_id, fields in entries:
                self._add((fields or {}).get(ENTRY_FIELD))
                self._after = as_text(entry_id)
            read += len(entries)
            if len(entries) < _PAGE:
                break
            start = "(" + str(self._after)
        self._forget_before(now - self._window_s)
        return read

    def _add(self, data: bytes | None) -> None:
        try:
            record = decode_record(data or b"")
        except EntryError:
            self.unreadable += 1
            return
        if record.kind != "energy":
            return
        device = record.device_id
        times = self._times.setdefault(device, array("I"))
        at = int(record.received_at)
        if times and at < times[-1]:  # out of order (a replay, a requeue): keep them sorted
            times.insert(bisect_left(times, at), at)
        else:
            times.append(at)
        latest = self._latest.get(device)
        if latest is None or record.received_at >= latest.received_at:
            self._latest[device] = record

    def _forget_before(self, cutoff: float) -> None:
        for times in self._times.values():
            del times[: bisect_left(times, int(cutoff))]

    def views(self) -> dict[str, DeviceReadings]:
        return {
            device: DeviceReadings(latest, len(self._times.get(device, ())))
            for device, latest in self._latest.items()
        }
