"""Configuration of the ingest service, from the environment only (prefix GATEWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from gateway_common.disk_space import DEFAULT_MIN_FREE_MB, check_dir
from gateway_common.settings import CommonSettings

__all__ = ["IngestSettings"]


class IngestSettings(CommonSettings):
    serial_port: str = Field("/dev/ttyACM0", min_length=1)
    """A device path or a pyserial URL such as `socket://sim:7000`."""
    serial_baudrate: int = Field(115200, gt=0)
    serial_read_timeout_ms: int = Field(100, gt=0, le=5000)
    """How long one read waits for the first byte; also how quickly a stop is noticed."""
    partial_frame_timeout_ms: int = Field(1000, gt=0)
    """Line idle time after which a partial frame is given up and its bytes rescanned."""
    reopen_backoff_max_s: float = Field(5.0, gt=0)
    """Cap of the delay between attempts to reopen a lost port."""
    buffer_frames: int = Field(10000, gt=0)
    """Frames held in memory while Redis is unreachable; beyond it the oldest are dropped."""
    write_batch_frames: int = Field(100, gt=0)
    """Frames written to Redis per round trip (one MULTI/EXEC)."""
    redis_backoff_max_s: float = Field(5.0, gt=0)
    """Cap of the delay between attempts to write to an unreachable Redis."""
    flush_timeout_s: float = Field(5.0, ge=0)
    """On stop, how long to keep trying to write the frames already read."""
    serial_write_timeout_ms: int = Field(1000, gt=0, le=60_000)
    """A write to the modem (a downlink request) that takes longer is given up (and retried)."""
    downlink_max_in_flight: int = Field(1, ge=1, le=255)
    """Downlink commands written to the modem and not answered yet, at most. The Sub-IoT modem
    keeps one master session: more only for a modem known to do more."""
    downlink_access_class: int | None = Field(None, ge=0, le=255)
    """Access class of every downlink request; unset: the one of the device's last D7 status."""
    device_interval_s: float = Field(600, gt=0)
    """Reporting interval assumed for a device that has not reported one (dormant timeout)."""
    redis_data_dir: Path | None = None
    """Redis's data directory as this container sees it (the volume, read-only): its free space
    is watched (gateway_common.disk_space). Unset: not watched."""
    disk_min_free_mb: int = Field(DEFAULT_MIN_FREE_MB, ge=0)
    """Below this free space on Redis's disk, ingest reports the disk low (health, metric)."""

    @field_validator("redis_data_dir")
    @classmethod
    def _data_dir_readable(cls, path: Path | None) -> Path | None:
        return check_dir(path)

    @field_validator("serial_port")
    @classmethod
    def _serial_port_usable(cls, url: str) -> str:
        from gateway_ingest.serial_link import check_url  # noqa: PLC0415  # pyserial's module

        check_url(url)
        return url

    @model_validator(mode="after")
    def _flush_within_watchdog(self) -> IngestSettings:
        if self.flush_timeout_s >= self.watchdog_s:
            raise ValueError(
                "GATEWAY_FLUSH_TIMEOUT_S must be below GATEWAY_WATCHDOG_S: the watchdog ends a "
                "stop that takes longer"
            )
        return self
