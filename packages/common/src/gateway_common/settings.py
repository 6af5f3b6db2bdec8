"""Settings shared by every service, read from the environment only (pydantic-settings).

Each service subclasses `CommonSettings`. `load_settings` turns any invalid value into one
message that names the environment variable, and stops the service at start.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Literal, NoReturn, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ENV_PREFIX",
    "CommonSettings",
    "SettingsError",
    "default_consumer_name",
    "load_settings",
    "read_secret_file",
]

ENV_PREFIX = "GATEWAY_"


class SettingsError(ValueError):
    """A setting that is invalid; the message names the environment variable."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    redis_url: str = Field(
        "redis://localhost:6379/0", pattern=r"^(redis|rediss|unix)://", description="Redis URL"
    )
    stream_prefix: str = Field("gw", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    metrics_port: int | None = Field(None, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"


S = TypeVar("S", bound=CommonSettings)


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
