"""A command request from a source (gatewayctl, or a DCMD through the publisher): validated
against the device registry, then stored queued, or stored rejected with its reason.

Validation happens before anything is queued: the DEVICE_ID must be one the gateway publishes
and in the registry (`{p}:devices`), the interval within 10 ... 86,400 s. A value left out is
the one the device last reported (its EnergyConfigFile); `enabled` is true when the device never
said. A rejected request is stored too (state `rejected`, with its reason) so that it shows in
`gatewayctl config list`; it never reaches `{p}:commands`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway_common.commands import (
    Command,
    CommandError,
    default_timeout_s,
    validate_device_id,
    validate_interval,
)
from gateway_common.devices import DEFAULT_INTERVAL_S, DeviceEntry, RegistryError

if TYPE_CHECKING:
    import redis

    from gateway_common.command_store import CommandStore

__all__ = ["reject_request", "request_command", "resolve"]


def resolve(
    device_id: str,
    interval_s: object,
    enabled: bool | None,
    device: DeviceEntry | None,
) -> tuple[int, bool]:
    """The values to write, or CommandError with the rejection reason."""
    validate_device_id(device_id)
    if device is None:
        raise CommandError(f"device {device_id} is not in the registry")
    if interval_s is None:
        if device.interval_s is None:
            raise CommandError(f"device {device_id} never reported its interval: give one")
        interval_s = round(device.interval_s)
    interval = validate_interval(interval_s)
    if enabled is None:
        enabled = True if device.enabled is None else device.enabled
    return interval, enabled


def _device(client: redis.Redis, key: str, device_id: str) -> DeviceEntry | None:
    raw: Any = client.hget(key, device_id)
    if raw is None:
        return None
    try:
        return DeviceEntry.from_bytes(raw)
    except RegistryError:
        return None


def request_command(
    store: CommandStore,
    client: redis.Redis,
    *,
    device_id: str,
    interval_s: object,
    enabled: bool | None,
    source: str,
    now: float,
    timeout_s: float | None = None,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> Command:
    """Validate and store one request; returns the command (queued, or rejected with why).

    `timeout_s` (GATEWAY_DOWNLINK_TIMEOUT_S) overrides the default of 3 x the device's current
    interval + 60 s.
    """
    command_id = store.next_id()
    device = _device(client, store.keys.devices, device_id) if device_id else None
    try:
        interval, on = resolve(device_id, interval_s, enabled, device)
    except CommandError as exc:
        whole = isinstance(interval_s, int) and not isinstance(interval_s, bool)
        asked = interval_s if whole and isinstance(interval_s, int) else 0
        command = Command.rejected(
            command_id,
            device_id[:64],
            str(exc),
            source=source,
            at=now,
            interval_s=asked,
            enabled=bool(enabled),
        )
        return store.submit(command)
    current = (device.interval_s if device else None) or default_interval_s
    timeout = default_timeout_s(current) if timeout_s is None else timeout_s
    command = Command.queued(
        command_id, device_id, interval, on, source=source, at=now, timeout_s=timeout
    )
    return store.submit(command)


def reject_request(
    store: CommandStore, device_id: str, reason: str, *, source: str, now: float
) -> Command:
    """Store a request refused before its values could be read (a malformed DCMD)."""
    command = Command.rejected(store.next_id(), device_id[:64], reason, source=source, at=now)
    return store.submit(command)
