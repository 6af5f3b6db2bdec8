"""The watch of Redis's disk: the gauge always, a health problem below the minimum."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway_common.disk_space import DiskSpace, DiskWatch, check_dir, measure
from gateway_common.health import Health

MIB = 1 << 20


class FakeDisk:
    """What statvfs says, as the test sets it; None: it fails."""

    def __init__(self) -> None:
        self.free_bytes: int | None = 800 * MIB

    def __call__(self, path: Path) -> DiskSpace:
        if self.free_bytes is None:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return DiskSpace(str(path), self.free_bytes, 1000 * MIB)


def test_low_space_is_a_health_problem_a_restart_would_not_fix() -> None:
    disk, health, registry = FakeDisk(), Health("ingest"), CollectorRegistry()
    watch = DiskWatch(Path("/redis-data"), 512 * MIB, health, registry, measure_space=disk)

    watch.check()
    assert health.state().ok
    assert registry.get_sample_value("gateway_redis_disk_free_bytes") == 800 * MIB

    disk.free_bytes = 3 * MIB
    watch.check()
    state = health.state()
    assert not state.ok
    assert state.reason == (
        "disk: Redis's data directory /redis-data has 3.0 MiB free of 1000 MiB (below 512 "
        "MiB): Redis cannot persist once it is full, and an AOF rewrite needs room first"
    )
    assert state.unhealthy_for_s == 0  # never the watchdog's reason to restart the service
    assert registry.get_sample_value("gateway_redis_disk_free_bytes") == 3 * MIB

    disk.free_bytes = None
    watch.check()
    assert "disk: cannot read the free space of /redis-data" in health.state().reason

    disk.free_bytes = 600 * MIB
    watch.check()
    assert health.state().ok


def test_the_real_filesystem_is_measured(tmp_path: Path) -> None:
    space = measure(tmp_path)
    stats = os.statvfs(tmp_path)
    assert space.total_bytes == stats.f_blocks * stats.f_frsize
    assert 0 <= space.free_bytes <= space.total_bytes
    assert check_dir(tmp_path) == tmp_path
    assert check_dir(None) is None
    with pytest.raises(ValueError, match="is not a directory"):
        check_dir(tmp_path / "absent")
