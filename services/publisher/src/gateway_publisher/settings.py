"""The publisher's configuration, from `GATEWAY_*` environment variables only."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from pydantic import Field, FilePath, PrivateAttr, SecretStr, field_validator, model_validator

from gateway_common.settings import CommonSettings, default_consumer_name, read_secret_file

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["PublisherSettings"]

#: A topic level: not empty, no level separator, no wildcard.
_TOPIC_LEVEL = r"^[^/+#]+$"


class PublisherSettings(CommonSettings):
    mqtt_host: str = Field(min_length=1)
    mqtt_port: int = Field(8883, ge=1, le=65535)
    mqtt_tls: bool = True
    """TLS with the server certificate and host name verified; off only for a loopback broker."""
    mqtt_ca_file: FilePath | None = None
    """CA bundle that signs the broker's certificate; None means the system CAs."""
    mqtt_cert_file: FilePath | None = None
    mqtt_key_file: FilePath | None = None
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_password_file: FilePath | None = None
    mqtt_client_id: str | None = Field(None, min_length=1, max_length=128)
    project_id: str = Field(pattern=_TOPIC_LEVEL)
    edge_node_id: str = Field(pattern=_TOPIC_LEVEL)
    topic_root: str = Field("mqtts", pattern=_TOPIC_LEVEL)
    consumer_name: str = Field(default_factory=default_consumer_name, min_length=1)
    """Consumer name in group `publisher`. One publisher runs per MQTT identity, so at start
    it takes over the records left pending under any other name (an earlier one of its own)."""
    window_messages: int = Field(64, ge=1, le=65535)
    """MQTT messages (DDATA and DBIRTH) published and not yet acknowledged by the broker."""
    max_attempts: int = Field(5, ge=1, le=1000)
    """Publishes of a record the broker refuses before it goes to the dead letters."""
    block_ms: int = Field(1000, ge=10, le=5000)
    """Longest blocking read of the records stream (below the Redis socket timeout)."""
    reconnect_min_s: int = Field(1, ge=1, le=3600)
    reconnect_max_s: int = Field(30, ge=1, le=3600)
    keepalive_s: int = Field(60, ge=5, le=65535)
    shutdown_grace_ms: int = Field(2000, ge=0, le=60000)
    """On stop, how long to wait for the PUBACKs of the messages in flight."""
    backlog_interval_ms: int = Field(5000, ge=100, le=600000)
    """How often the backlog gauge is refreshed from Redis."""
    records_retention_s: float = Field(86_400, ge=0)
    """Published records are kept this long in `{p}:records`, then trimmed."""
    trim_interval_s: float = Field(60, gt=0)
    """How often to trim `{p}:records` behind every consumer group's acknowledgements."""
    device_interval_s: float = Field(600, gt=0)
    """Reporting interval assumed until a device's EnergyConfigFile arrives (staleness, and
    the default timeout of a command to it)."""
    downlink: bool = False
    """Take commands from SCorp-io (DCMD), declare metrics 16 and 17 in DBIRTH and publish each
    EnergyConfigFile as their DDATA. Off: the 15-metric contract, byte for byte."""
    downlink_timeout_s: float | None = Field(None, gt=0)
    """How long a command may take (queued, then from its last write to the modem); unset: 3 x
    the device's reporting interval + 60 s."""

    _password: str | None = PrivateAttr(default=None)

    @field_validator("mqtt_ca_file")
    @classmethod
    def _ca_file_usable(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                ssl.create_default_context(cafile=str(path))
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"not a PEM CA certificate file: {exc}") from exc
        return path

    @model_validator(mode="after")
    def _check_combinations(self) -> PublisherSettings:
        if self.mqtt_password is not None and self.mqtt_password_file is not None:
            raise ValueError(
                "GATEWAY_MQTT_PASSWORD and GATEWAY_MQTT_PASSWORD_FILE are both set; set one"
            )
        if self.mqtt_key_file is not None and self.mqtt_cert_file is None:
            raise ValueError("GATEWAY_MQTT_KEY_FILE is set without GATEWAY_MQTT_CERT_FILE")
        if self.mqtt_cert_file is not None:
            try:
                ssl.create_default_context().load_cert_chain(
                    str(self.mqtt_cert_file),
                    str(self.mqtt_key_file) if self.mqtt_key_file else None,
                    password="",  # no passphrase setting: an encrypted key fails, never prompts
                )
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    "GATEWAY_MQTT_CERT_FILE / GATEWAY_MQTT_KEY_FILE: not a PEM client certificate "
                    f"and its unencrypted private key: {exc}"
                ) from exc
        if self.mqtt_username is None and (self.mqtt_password or self.mqtt_password_file):
            # MQTT sends no password without a user name: it would be ignored, and the broker
            # would refuse the connection over and over.
            given = "_FILE" if self.mqtt_password_file else ""
            raise ValueError(f"GATEWAY_MQTT_PASSWORD{given} is set without GATEWAY_MQTT_USERNAME")
        if self.shutdown_grace_ms / 1000 >= self.watchdog_s:
            raise ValueError(
                "GATEWAY_SHUTDOWN_GRACE_MS must be below GATEWAY_WATCHDOG_S: the watchdog ends "
                "a stop that takes longer"
            )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("GATEWAY_RECONNECT_MAX_S is below GATEWAY_RECONNECT_MIN_S")
        if self.mqtt_password_file is not None:
            self._password = read_secret_file(self.mqtt_password_file, "GATEWAY_MQTT_PASSWORD_FILE")
        elif self.mqtt_password is not None:
            self._password = self.mqtt_password.get_secret_value()
        return self

    @property
    def password(self) -> str | None:
        """The broker password, from GATEWAY_MQTT_PASSWORD or the file it names."""
        return self._password

    @property
    def client_id(self) -> str:
        return self.mqtt_client_id or f"gateway-{self.edge_node_id}"
