"""What `gatewayctl status` reports: stream lengths, consumer groups, devices, publishing delay,
and what Redis itself is in trouble with.

Everything comes from a handful of O(1) or O(log n) Redis commands (XLEN, XINFO GROUPS,
XINFO CONSUMERS, XPENDING summary, XRANGE COUNT 1, TIME, PING, INFO persistence and memory), one
HGETALL of the device registry (to count stale devices) and one of the downlink commands' counts
by state, so it is cheap on a busy gateway. All are reads: they work while Redis refuses writes
(a full disk, a full memory), which is when an operator needs them.
`lag` is Redis 7's count of entries not yet delivered to the group; Redis reports it as null when
it cannot tell (after deletions), and so do we. A group that does not exist yet (its service never
started) has `pending`, `lag` and its consumer list null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from gateway_common.command_store import CommandStore
from gateway_common.devices import DEFAULT_INTERVAL_S
from gateway_common.disk_space import low_space_reason, measure
from gateway_common.group_info import read_group
from gateway_common.redis_refusals import refusal_of
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP
from gateway_ctl.devices import collect_devices, count_stale

if TYPE_CHECKING:
    from pathlib import Path

    import redis

    from gateway_common.streams import StreamKeys

__all__ = [
    "ConsumerStatus",
    "DiskStatus",
    "GatewayStatus",
    "GroupStatus",
    "collect_status",
    "disk_status",
]


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    name: str
    pending: int
    idle_ms: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "pending": self.pending, "idle_ms": self.idle_ms}


@dataclass(frozen=True, slots=True)
class GroupStatus:
    name: str
    pending: int
    lag: int | None
    last_delivered_id: str
    consumers: tuple[ConsumerStatus, ...]


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """Redis's disk as this process sees it (GATEWAY_REDIS_DATA_DIR)."""

    path: str
    free_bytes: int | None
    total_bytes: int | None
    low: bool
    text: str
    """For people: the free space, why it is low, or why it cannot be read."""

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "low": self.low,
            "text": self.text,
        }


def disk_status(path: Path, min_free_mb: int) -> DiskStatus:
    """The free space of Redis's data directory; needs no Redis (it may be down for it)."""
    try:
        space = measure(path)
    except OSError as exc:
        text = f"cannot read the free space of {path}: {exc}"
        return DiskStatus(str(path), None, None, low=True, text=text)
    low = space.low(min_free_mb << 20)
    text = low_space_reason(space, min_free_mb << 20) if low else str(space)
    return DiskStatus(str(path), space.free_bytes, space.total_bytes, low=low, text=text)


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    prefix: str
    frames_length: int
    records_length: int
    dead_length: int
    devices: int
    stale_devices: int
    decoder: GroupStatus | None
    publisher: GroupStatus | None
    oldest_unpublished_age_s: float | None
    commands: dict[str, int]
    """Downlink commands in each state now."""
    redis_problems: tuple[str, ...] = ()
    """What Redis itself is in trouble with ("Redis cannot persist: No space left on device",
    a failed AOF rewrite, over its maxmemory); empty when nothing."""
    disk: DiskStatus | None = None
    """Redis's disk, when GATEWAY_REDIS_DATA_DIR names it."""

    def as_json(self) -> dict[str, Any]:
        return {
            "streams": {
                "frames": _stream_json(self.frames_length, self.decoder),
                "records": _stream_json(self.records_length, self.publisher),
                "dead": {"length": self.dead_length},
            },
            "devices": self.devices,
            "stale_devices": self.stale_devices,
            "consumers": {
                DECODER_GROUP: _consumers_json(self.decoder),
                PUBLISHER_GROUP: _consumers_json(self.publisher),
            },
            "oldest_unpublished_age_s": self.oldest_unpublished_age_s,
            "commands": self.commands,
            "redis": {"problems": list(self.redis_problems)},
            "disk": None if self.disk is None else self.disk.as_json(),
        }


def _stream_json(length: int, group: GroupStatus | None) -> dict[str, Any]:
    return {
        "length": length,
        "pending": None if group is None else group.pending,
        "lag": None if group is None else group.lag,
    }


def _consumers_json(group: GroupStatus | None) -> list[dict[str, Any]] | None:
    return None if group is None else [consumer.as_json() for consumer in group.consumers]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _group(client: redis.Redis, stream: str, name: str) -> GroupStatus | None:
    info = read_group(client, stream, name)
    if info is None:
        return None
    consumers = tuple(
        ConsumerStatus(_text(c["name"]), int(c["pending"]), int(c["idle"]))
        for c in client.xinfo_consumers(stream, name)
    )
    return GroupStatus(
        name=name,
        pending=info.pending,
        lag=info.lag,
        last_delivered_id=info.last_delivered_id,
        consumers=consumers,
    )


def _oldest_unpublished_id(
    client: redis.Redis, stream: str, group: GroupStatus | None
) -> str | None:
    """The oldest record the publisher has not acknowledged: pending first, then undelivered."""
    if group is not None and group.pending:
        oldest_pending = client.xpending(stream, group.name)["min"]
        if oldest_pending is not None:
            return _text(oldest_pending)
    start = "-" if group is None else "(" + group.last_delivered_id
    entries = client.xrange(stream, min=start, max="+", count=1)
    first_id = entries[0][0] if entries else None
    return None if first_id is None else _text(first_id)


def _age_s(client: redis.Redis, entry_id: str | None) -> float | None:
    """Age of an entry from the millisecond time in its id, measured by the Redis clock."""
    if entry_id is None:
        return None
    seconds, microseconds = client.time()
    now_ms = seconds * 1000 + microseconds // 1000
    return round(max(0, now_ms - int(entry_id.split("-")[0])) / 1000, 3)


_MIB = 1 << 20


def redis_problems(client: redis.Redis) -> tuple[str, ...]:
    """What Redis itself is in trouble with: it refuses writes because it cannot write its AOF
    (PING is refused too then, with MISCONF and the error, e.g. "No space left on device"), its
    last AOF rewrite failed (the AOF grows until one succeeds: a disk filling up), or it is over
    its maxmemory (it refuses the writes that grow memory)."""
    problems: list[str] = []
    try:
        client.ping()
    except ResponseError as exc:
        refusal = refusal_of(exc)
        problems.append(
            f"Redis refuses commands: {str(exc)[:200]}" if refusal is None else refusal.text
        )
    persistence: Any = client.info("persistence")
    if (
        int(persistence.get("aof_enabled", 0))
        and persistence.get("aof_last_bgrewrite_status") == "err"
    ):
        problems.append(
            "Redis's last AOF rewrite failed: its AOF grows until one succeeds (disk space?)"
        )
    memory: Any = client.info("memory")
    used, ceiling = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if ceiling and used >= ceiling:
        problems.append(
            f"Redis is full: {used / _MIB:.0f} MiB used, its maxmemory is {ceiling / _MIB:.0f} MiB"
        )
    return tuple(problems)


def collect_status(
    client: redis.Redis, keys: StreamKeys, default_interval_s: float = DEFAULT_INTERVAL_S
) -> GatewayStatus:
    """Read the state of the gateway whose keys are `keys`."""
    devices = collect_devices(client, keys, default_interval_s)
    decoder = _group(client, keys.frames, DECODER_GROUP)
    publisher = _group(client, keys.records, PUBLISHER_GROUP)
    oldest = _oldest_unpublished_id(client, keys.records, publisher)
    problems = redis_problems(client)
    return GatewayStatus(
        prefix=keys.prefix,
        frames_length=int(client.xlen(keys.frames)),
        records_length=int(client.xlen(keys.records)),
        dead_length=int(client.xlen(keys.dead)),
        devices=len(devices),
        stale_devices=count_stale(devices),
        decoder=decoder,
        publisher=publisher,
        oldest_unpublished_age_s=_age_s(client, oldest),
        commands=CommandStore(client, keys).states(),
        redis_problems=problems,
    )
