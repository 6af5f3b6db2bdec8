"""Settings of gatewayctl: the same GATEWAY_* variables as the services it inspects."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway_common.devices import DEFAULT_INTERVAL_S
from gateway_common.disk_space import DEFAULT_MIN_FREE_MB
from gateway_common.settings import CommonSettings

__all__ = ["CtlSettings"]


class CtlSettings(CommonSettings):
    """GATEWAY_REDIS_URL and GATEWAY_STREAM_PREFIX name the gateway to inspect."""

    device_interval_s: float = Field(DEFAULT_INTERVAL_S, gt=0)
    """Reporting interval of a device that has not sent its EnergyConfigFile (staleness, and
    the default timeout of a command to it)."""
    downlink_timeout_s: float | None = Field(None, gt=0)
    """How long a command may take (queued, then from its last write to the modem); unset: 3 x
    the device's reporting interval + 60 s."""
    redis_data_dir: Path | None = None
    """Redis's data directory as this container sees it (ingest's has the volume, read-only):
    `status` shows its free space, also while Redis is unreachable. Unset: not shown."""
    disk_min_free_mb: int = Field(DEFAULT_MIN_FREE_MB, ge=0)
    """Below this free space, `status` shows Redis's disk as low."""
