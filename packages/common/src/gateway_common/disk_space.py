"""The free space of Redis's disk, watched from outside Redis.

Redis names a full disk only while it keeps running: with `appendfsync everysec` it refuses
writes with MISCONF ("No space left on device", see redis_refusals.py); with `appendfsync
always`, the default, it exits at the first AOF write that fails, and the services see it
unreachable, nothing more. A process that sees Redis's data directory (docker-compose.yml mounts
the volume read-only into ingest) watches its free space instead: the gauge
`gateway_redis_disk_free_bytes`, and below `GATEWAY_DISK_MIN_FREE_MB` a health problem `disk`
that names it, before Redis stops and while it cannot persist. A restart does not free a disk:
the problem never makes the watchdog stop the service.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import Gauge

from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from gateway_common.health import Health
    from gateway_common.lifecycle import StopSignal

__all__ = [
    "CHECK_INTERVAL_S",
    "DEFAULT_MIN_FREE_MB",
    "DiskSpace",
    "DiskWatch",
    "check_dir",
    "measure",
]

log = get_logger(__name__)

CHECK_INTERVAL_S: Final = 5.0
DEFAULT_MIN_FREE_MB: Final = 512
"""Below it, the disk is reported low: room for an AOF rewrite (a new base file as large as the
data set) and for some hours of appends."""
_MIB: Final = 1 << 20
_COMPONENT: Final = "disk"


@dataclass(frozen=True, slots=True)
class DiskSpace:
    path: str
    free_bytes: int
    """What an unprivileged process may still write (`df`'s Avail): Redis runs as `redis`."""
    total_bytes: int

    def low(self, min_free_bytes: int) -> bool:
        return self.free_bytes < min_free_bytes

    def __str__(self) -> str:
        return (
            f"Redis's data directory {self.path} has {self.free_bytes / _MIB:.1f} MiB free "
            f"of {self.total_bytes / _MIB:.0f} MiB"
        )

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "free_bytes": self.free_bytes, "total_bytes": self.total_bytes}


def check_dir(path: Path | None) -> Path | None:
    """For a setting's validator: `path` must be a directory whose free space can be read."""
    if path is None:
        return None
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory (Redis's data volume, mounted read-only)")
    measure(path)
    return path


def measure(path: Path) -> DiskSpace:
    """The space of the filesystem holding `path`; raises OSError if it cannot be read."""
    stats = os.statvfs(path)
    return DiskSpace(str(path), stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize)


def low_space_reason(space: DiskSpace, min_free_bytes: int) -> str:
    """The health reason for a disk below its minimum."""
    return (
        f"{space} (below {min_free_bytes / _MIB:.0f} MiB): Redis cannot persist once it is "
        "full, and an AOF rewrite needs room first"
    )


class DiskWatch:
    """Measures `path` every `interval_s` from a thread of its own (a statvfs, microseconds)."""

    def __init__(
        self,
        path: Path,
        min_free_bytes: int,
        health: Health,
        registry: CollectorRegistry,
        *,
        interval_s: float = CHECK_INTERVAL_S,
        measure_space: Callable[[Path], DiskSpace] = measure,
    ) -> None:
        self._path = path
        self._min_free_bytes = min_free_bytes
        self._health = health
        self._interval_s = interval_s
        self._measure = measure_space
        self._low = False
        self._free = Gauge(
            "gateway_redis_disk_free_bytes",
            "Free space (for an unprivileged writer) of the filesystem of Redis's data directory",
            registry=registry,
        )
        self._thread: threading.Thread | None = None

    def check(self) -> DiskSpace | None:
        """Measure once: the gauge, and the health problem while below the minimum."""
        try:
            space = self._measure(self._path)
        except OSError as exc:
            self._health.problem(
                _COMPONENT,
                f"cannot read the free space of {self._path}: {exc}",
                restart_helps=False,
            )
            return None
        self._free.set(space.free_bytes)
        if space.low(self._min_free_bytes):
            self._health.problem(
                _COMPONENT, low_space_reason(space, self._min_free_bytes), restart_helps=False
            )
            if not self._low:
                log.warning("disk_space_low", path=space.path, free_bytes=space.free_bytes)
            self._low = True
            return space
        self._health.clear(_COMPONENT)
        if self._low:
            log.info("disk_space_recovered", path=space.path, free_bytes=space.free_bytes)
        self._low = False
        return space

    def start(self, stop: StopSignal) -> DiskWatch:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="disk", daemon=True)
        self._thread.start()
        return self

    def _run(self, stop: StopSignal) -> None:
        self.check()
        while not stop.wait(self._interval_s):
            self.check()
