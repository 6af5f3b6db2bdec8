"""Settings of gateway-sim: GATEWAY_SIM_* environment variables, overridable by flags.

Field names carry the `sim_` prefix so that, under the common `GATEWAY_` prefix, they read from
`GATEWAY_SIM_*` while the shared ones (`GATEWAY_LOG_LEVEL`, `GATEWAY_LOG_FORMAT`) keep their
usual names. Command-line flags (see `main.py`) take precedence over the environment.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import Field, ValidationError, field_validator

from gateway_common.settings import ENV_PREFIX, CommonSettings

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FIELD_PREFIX", "SimulatorSettings", "flag_name", "load"]

FIELD_PREFIX = "sim_"
MAX_PORT = 65535


class SimulatorSettings(CommonSettings):
    sim_listen: str = Field(
        "pty",
        pattern=r"^(pty|tcp://[^\s/]+:\d{1,5})$",
        description='"pty" or "tcp://HOST:PORT" (port 0 picks a free one)',
    )
    sim_sensors: int = Field(3, ge=1, le=1000)
    sim_interval_s: float = Field(600.0, gt=0, le=86_400, description="EnergyFile period")
    sim_seed: int = Field(1, description="same seed, same UIDs and readings")
    sim_button_probability: float = Field(
        0.05, ge=0, le=1, description="chance of a button press per sensor and interval"
    )
    sim_invalid_probability: float = Field(
        0.01, ge=0, le=1, description="chance that a reading has measurement_valid = 0"
    )
    sim_frames: int = Field(0, ge=0, description="stop after this many frames; 0 = never")
    sim_wait_for_client: bool = Field(
        default=False, description="tcp only: boot the modem when the first client connects"
    )
    sim_refuse: str = Field(
        "",
        pattern=r"^[0-9A-Fa-f,\s]*$",
        description="DEVICE_IDs (comma-separated) whose sensors refuse a downlink write",
    )
    sim_silent: str = Field(
        "",
        pattern=r"^[0-9A-Fa-f,\s]*$",
        description="DEVICE_IDs (comma-separated) whose downlink writes are never answered",
    )

    @field_validator("sim_listen")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        if value != "pty" and int(value.rpartition(":")[2]) > MAX_PORT:
            raise ValueError(f"port must be at most {MAX_PORT}")
        return value

    @staticmethod
    def device_ids(value: str) -> set[str]:
        """The DEVICE_IDs of a comma-separated list (upper-case)."""
        return {part.strip().upper() for part in value.split(",") if part.strip()}

    def tcp_address(self) -> tuple[str, int] | None:
        """(host, port) for `tcp://HOST:PORT`, None for a pty."""
        if self.sim_listen == "pty":
            return None
        host, _, port = self.sim_listen.removeprefix("tcp://").rpartition(":")
        return host.strip("[]"), int(port)


def flag_name(field: str) -> str:
    """The command-line flag of a setting: `sim_interval_s` -> `--interval-s`."""
    return "--" + field.removeprefix(FIELD_PREFIX).replace("_", "-")


def load(overrides: Mapping[str, Any]) -> SimulatorSettings:
    """The environment, overridden by `overrides` (from flags), or exit 2 with one message."""
    try:
        return SimulatorSettings(**overrides)
    except ValidationError as exc:
        _fail(_describe(exc, overrides))


def _describe(error: ValidationError, overrides: Mapping[str, object]) -> str:
    parts = []
    for item in error.errors():
        loc = item.get("loc") or ()
        field = "_".join(str(p) for p in loc)
        name = ENV_PREFIX + field.upper() if loc else "settings"
        if field in overrides:
            name = f"{flag_name(field)} ({name})"
        value = item.get("input")
        shown = "" if loc == () or isinstance(value, dict) else f" (got {value!r})"
        parts.append(f"{name}: {item.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"configuration error: {message}\n")
    raise SystemExit(2)
