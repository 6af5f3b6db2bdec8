"""A DCMD message (a command to a device, SCorp-io's JSON shape of DDATA), read; pure.

`{root}/{project}/DCMD/{edge node}/{device}` with, for instance,

    {"metrics": [{"name": "Intervalle de mesure", "dataType": "Integer", "value": 300},
                 {"name": "Mesure activée", "dataType": "Boolean", "value": true}]}

Either metric may be left out (the device keeps the value it has). Anything else is refused
with a reason, never guessed: a topic that is not one of this edge node's DCMD topics, a
payload over `MAX_PAYLOAD_BYTES`, JSON that is not this shape, an unknown metric name, a
dataType or a value of the wrong type, a metric given twice. The values' ranges and the device
are checked where every source's are (gateway_common.command_requests).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from gateway_publisher.payloads import ENABLED, INTERVAL
from gateway_publisher.topics import TopicError

if TYPE_CHECKING:
    from gateway_publisher.topics import TopicScheme

__all__ = ["MAX_PAYLOAD_BYTES", "CommandRequest", "DcmdError", "parse_dcmd"]

MAX_PAYLOAD_BYTES: Final = 4096
"""A DCMD of two metrics takes about 150 bytes; anything far larger is refused unread."""
_SPECS: Final = {spec.name: spec for spec in (INTERVAL, ENABLED)}


class DcmdError(ValueError):
    """A DCMD that is refused; the message is the reason. `device_id` when the topic named
    one of this edge node's devices."""

    def __init__(self, reason: str, device_id: str = "") -> None:
        super().__init__(reason)
        self.device_id = device_id


class CommandRequest(NamedTuple):
    device_id: str
    interval_s: int | None
    enabled: bool | None


def _metric(item: Any, device_id: str) -> tuple[str, Any]:
    if not isinstance(item, dict):
        raise DcmdError("a metric is not a JSON object", device_id)
    name = item.get("name")
    if not isinstance(name, str):
        raise DcmdError("a metric has no name", device_id)
    spec = _SPECS.get(name)
    if spec is None:
        raise DcmdError(f"unknown metric {name[:80]!r}", device_id)
    data_type = item.get("dataType")
    if data_type != spec.data_type:
        raise DcmdError(
            f"metric {name!r} must have dataType {spec.data_type}, got {data_type!r}"[:200],
            device_id,
        )
    if "value" not in item:
        raise DcmdError(f"metric {name!r} has no value", device_id)
    value = item["value"]
    if spec is INTERVAL and (isinstance(value, bool) or not isinstance(value, int)):
        raise DcmdError(f"metric {name!r} must be a whole number, got {value!r}"[:200], device_id)
    if spec is ENABLED and not isinstance(value, bool):
        raise DcmdError(f"metric {name!r} must be true or false, got {value!r}"[:200], device_id)
    return name, value


def parse_dcmd(topic: str, payload: bytes, scheme: TopicScheme) -> CommandRequest:
    """The request a DCMD message makes; DcmdError with the reason it is refused."""
    try:
        device_id = scheme.command_device(topic)
    except TopicError as exc:
        raise DcmdError(str(exc)) from exc
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DcmdError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", device_id)
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DcmdError(f"payload is not JSON: {exc}"[:200], device_id) from exc
    metrics = body.get("metrics") if isinstance(body, dict) else None
    if not isinstance(metrics, list) or not metrics:
        raise DcmdError('payload has no "metrics" list', device_id)
    values: dict[str, Any] = {}
    for item in metrics:
        name, value = _metric(item, device_id)
        if name in values:
            raise DcmdError(f"metric {name!r} given twice", device_id)
        values[name] = value
    return CommandRequest(device_id, values.get(INTERVAL.name), values.get(ENABLED.name))
