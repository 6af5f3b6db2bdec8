"""Settings shared by every service, read from the environment only (pydantic-settings).

Each service subclasses `CommonSettings`. `load_settings` turns any invalid value into one
message that names the environment variable, and stops the service at start.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ENV_PREFIX",
    "CommonSettings",
    "HealthSettings",
    "SettingsError",
    "default_consumer_name",
    "load_settings",
    "read_secret_file",
]

ENV_PREFIX = "GATEWAY_"


class SettingsError(ValueError):
    """A setting that is invalid; the message names the environment variable."""


class HealthSettings(BaseSettings):
    """What `gateway-healthcheck` needs: the health file, nothing that imports a client library."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    health_file: Path | None = Path("/tmp/gateway-health.json")  # noqa: S108  (a tmpfs in the container)
    """Where the service writes its heartbeat for `gateway-healthcheck`."""
    health_max_age_s: float = Field(30.0, gt=0)
    """A heartbeat older than this means the service is not making progress."""


class CommonSettings(HealthSettings):
    redis_url: str = Field(
        "redis://localhost:6379/0", pattern=r"^(redis|rediss|unix)://", description="Redis URL"
    )
    stream_prefix: str = Field("gw", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    metrics_port: int | None = Field(None, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    watchdog_s: float = Field(120.0, gt=0)
    """A loop silent for this long is wedged: the process exits (the restart policy restarts it)."""
    unhealthy_exit_s: float = Field(300.0, gt=0)
    """After a problem (port, Redis, broker) lasted this long, the service stops and exits 75."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, url: str) -> str:
        # Imported here: gateway-healthcheck imports this module and must not load redis-py.
        from gateway_common.redis_conn import check_url  # noqa: PLC0415

        check_url(url)
        return url


S = TypeVar("S", bound=HealthSettings)


def default_consumer_name() -> str:
    """The host name: a container keeps it across restarts, so pending entries find their owner."""
    return socket.gethostname()


def read_secret_file(path: Path, variable: str) -> str:
    """Read a secret from a file (Docker secrets), without its trailing newline."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror}") from exc


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = item.get("loc") or ()
        name = ENV_PREFIX + "_".join(str(p) for p in loc).upper() if loc else "settings"
        value = item.get("input")
        shown = "" if loc == () or isinstance(value, dict) else f" (got {value!r})"
        parts.append(f"{name}: {item.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)


def load_settings(cls: type[S]) -> S:
    """Build the settings from the environment, or stop with one clear message."""
    try:
        return cls()
    except ValidationError as exc:
        _fail(_describe(exc))
    except SettingsError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"configuration error: {message}\n")
    raise SystemExit(2)
