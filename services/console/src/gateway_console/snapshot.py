"""What the pages show, read from Redis in one go: one snapshot per refresh, shared by all viewers.

Streams, groups, backlog and devices come from gatewayctl's readers (`collect_status`,
`collect_devices`), so the console and `gatewayctl status` always agree. What the console adds
is derived, and the pages say so:

- frames per minute: `{p}:frames` entries whose id (the Redis time of ingest's XADD) falls in
  the last 60 s, counted up to `FRAMES_COUNT_CAP`;
- last frame age: from the id of the newest `{p}:frames` entry, by the Redis clock;
- the modem's last frame counter and the time ingest saw it: `{p}:ingest:modem`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway_ctl.devices import DeviceRow, collect_devices
from gateway_ctl.output import as_text, redis_now
from gateway_ctl.status import GatewayStatus, collect_status

if TYPE_CHECKING:
    import redis

    from gateway_common.streams import StreamKeys
    from gateway_console.readings import DeviceReadings, ReadingsIndex

__all__ = ["FRAMES_COUNT_CAP", "DeviceView", "FrameActivity", "Snapshot", "collect_snapshot"]

FRAMES_COUNT_CAP: Final = 1000


@dataclass(frozen=True, slots=True)
class FrameActivity:
    per_minute: int
    """Frames added to `{p}:frames` in the last 60 s (at most FRAMES_COUNT_CAP)."""
    capped: bool
    last_frame_age_s: float | None
    modem_counter: int | None
    modem_seen_at: float | None


@dataclass(frozen=True, slots=True)
class DeviceView:
    row: DeviceRow
    readings: DeviceReadings | None

    @property
    def device_id(self) -> str:
        return self.row.device_id


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    """Epoch seconds by the Redis clock."""
    status: GatewayStatus
    devices: tuple[DeviceView, ...]
    frames: FrameActivity

    @property
    def stale(self) -> tuple[DeviceView, ...]:
        return tuple(d for d in self.devices if d.row.stale)

    @property
    def backlog(self) -> int | None:
        """Records the publisher has not acknowledged: pending + lag (None: unknown)."""
        group = self.status.publisher
        if group is None:
            return self.status.records_length
        return None if group.lag is None else group.pending + group.lag

    def device(self, device_id: str) -> DeviceView | None:
        return next((d for d in self.devices if d.device_id == device_id), None)


def _frame_activity(client: redis.Redis, keys: StreamKeys, now: float) -> FrameActivity:
    now_ms = int(now * 1000)
    newest: Any = client.xrevrange(keys.frames, count=1)
    age = None
    if newest:
        age = max(0.0, (now_ms - int(as_text(newest[0][0]).split("-")[0])) / 1000)
    recent: Any = client.xrange(
        keys.frames, min=f"{now_ms - 60_000}-0", max="+", count=FRAMES_COUNT_CAP
    )
    modem: Any = client.hgetall(keys.ingest_state)
    counter = seen_at = None
    try:
        counter = int(modem[b"counter"]) if b"counter" in modem else None
        seen_at = float(modem[b"seen_at"]) if b"seen_at" in modem else None
    except ValueError:
        counter = seen_at = None
    return FrameActivity(len(recent), len(recent) >= FRAMES_COUNT_CAP, age, counter, seen_at)


def collect_snapshot(
    client: redis.Redis,
    keys: StreamKeys,
    index: ReadingsIndex,
    default_interval_s: float,
) -> Snapshot:
    """Read everything the pages show from Redis (the services are asked by the refresher)."""
    now = redis_now(client)
    index.update(client, now)
    readings = index.views()
    rows = collect_devices(client, keys, default_interval_s)
    return Snapshot(
        taken_at=now,
        status=collect_status(client, keys, default_interval_s),
        devices=tuple(DeviceView(row, readings.get(row.device_id)) for row in rows),
        frames=_frame_activity(client, keys, now),
    )
