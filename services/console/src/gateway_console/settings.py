"""The console's configuration, from `GATEWAY_*` environment variables only.

Besides the common settings (Redis, stream prefix, logging, health, metrics port), the console
reads its own `GATEWAY_CONSOLE_*` variables. It refuses to start without a password unless
`GATEWAY_CONSOLE_AUTH=off` says so explicitly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FilePath, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway_common.devices import DEFAULT_INTERVAL_S
from gateway_common.settings import CommonSettings, read_secret_file

__all__ = ["ConsoleSettings", "parse_health_urls"]

#: `name=url` pairs, comma-separated: a service name (shown in the page) and its /healthz URL.
_NAME = r"[A-Za-z0-9_.\-]{1,32}"


def parse_health_urls(text: str) -> dict[str, str]:
    """`ingest=http://ingest:9100/healthz,...` -> {"ingest": "http://ingest:9100/healthz"}."""
    urls = dict[str, str]()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"not a name=http://host:port/healthz pair: {item!r}")
        if name in urls:
            raise ValueError(f"service {name!r} is named twice")
        urls[name] = url
    return urls


class ConsoleSettings(CommonSettings):
    console_host: str = Field("0.0.0.0", min_length=1)  # noqa: S104  (a container's port)
    """Address the console listens on (a container listens on every interface)."""
    console_port: int = Field(8080, ge=1, le=65535)
    console_user: str = Field("admin", min_length=1, pattern=r"^[^:]+$")
    """HTTP basic auth user name (a colon cannot be part of it)."""
    console_auth: Literal["on", "off"] = "on"
    """`off` serves the console without a password: only for a port bound to loopback."""
    console_password_file: FilePath | None = None
    """File holding the password (a Docker secret); required while auth is on."""
    console_health_urls: str = ""
    """`name=url` pairs of the services' /healthz, comma-separated (empty: not shown)."""
    console_refresh_s: float = Field(5.0, ge=0.2, le=300)
    """How often the console reads Redis and the services, and the pages update themselves."""
    console_public_url: str | None = Field(None, pattern=r"^https?://")
    """The address people open (logged at start); default: built from host and port."""
    device_interval_s: float = Field(DEFAULT_INTERVAL_S, gt=0)
    """Reporting interval of a device that has not sent its EnergyConfigFile (staleness)."""
    frames_retention_s: float = Field(604_800, ge=0)
    """The decoder's setting of the same name, read with the same default: how far back the
    frames archive (the device plots' source) reaches, so the longest window the page offers."""

    _password: str | None = PrivateAttr(default=None)
    _health_urls: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("console_health_urls")
    @classmethod
    def _health_urls_usable(cls, text: str) -> str:
        parse_health_urls(text)
        return text

    @model_validator(mode="after")
    def _password_present(self) -> ConsoleSettings:
        self._health_urls = parse_health_urls(self.console_health_urls)
        if self.console_auth == "off":
            return self
        if self.console_password_file is None:
            raise PydanticCustomError(
                "password_required",
                "GATEWAY_CONSOLE_PASSWORD_FILE is not set: the console needs a password file "
                "(or GATEWAY_CONSOLE_AUTH=off, only on a port bound to loopback)",
            )
        password = read_secret_file(self.console_password_file, "GATEWAY_CONSOLE_PASSWORD_FILE")
        if not password:
            raise PydanticCustomError(
                "password_empty",
                "GATEWAY_CONSOLE_PASSWORD_FILE: {path} is empty",
                {"path": str(self.console_password_file)},
            )
        self._password = password
        return self

    @property
    def password(self) -> str | None:
        """The password from GATEWAY_CONSOLE_PASSWORD_FILE; None when auth is off."""
        return self._password

    @property
    def health_urls(self) -> dict[str, str]:
        return dict(self._health_urls)

    @property
    def public_url(self) -> str:
        if self.console_public_url:
            return self.console_public_url
        host = "127.0.0.1" if self.console_host in {"0.0.0.0", "::"} else self.console_host  # noqa: S104
        return f"http://{host}:{self.console_port}/"
