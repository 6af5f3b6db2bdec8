"""SCorp-io JSON payloads (docs/protocol.md section 4), built from records; pure functions.

The same record always gives the same bytes, so a record republished after a crash or a
reconnect carries the same payload and the same receive timestamp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from gateway_common.entries import Record

__all__ = [
    "BUTTON_PRESSED",
    "LINK_STATE",
    "METRICS",
    "SIGNAL",
    "MetricSpec",
    "PayloadError",
    "dbirth_payload",
    "ddata_payload",
    "timestamp_ms",
]


class PayloadError(ValueError):
    """A record whose fields do not fit the metrics (missing, wrong type or length)."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    data_type: str


_PHASES: Final = (1, 2, 3)
APPARENT: Final = tuple(MetricSpec(f"Énergie apparente/Phase {p}", "Long") for p in _PHASES)
ACTIVE: Final = tuple(MetricSpec(f"Énergie active/Phase {p}", "Long") for p in _PHASES)
CURRENT: Final = tuple(MetricSpec(f"Intensité/Phase {p}", "Integer") for p in _PHASES)
VOLTAGE: Final = tuple(MetricSpec(f"Tension/Phase {p}", "Short") for p in _PHASES)
SIGNAL: Final = MetricSpec("Force du signal radio DASH7", "Short")
BUTTON_PRESSED: Final = MetricSpec("Bouton pressé", "Boolean")
LINK_STATE: Final = MetricSpec("État de la liaison Modbus - DASH7", "Boolean")

#: The 15 metrics every DBIRTH declares, in the order SCorp-io projects were configured with.
METRICS: Final = (*APPARENT, *ACTIVE, *CURRENT, *VOLTAGE, SIGNAL, BUTTON_PRESSED, LINK_STATE)

#: Energy fields (Record.fields) and the metrics they feed, phase by phase.
_ENERGY_FIELDS: Final = (
    ("apparent_energy_vah", APPARENT),
    ("active_energy_wh", ACTIVE),
    ("current_ma", CURRENT),
    ("voltage_v", VOLTAGE),
)


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def timestamp_ms(received_at: float) -> int:
    """Epoch milliseconds of a receive time in epoch seconds."""
    return round(received_at * 1000)


def dbirth_payload() -> bytes:
    """The DBIRTH payload: the declaration of all 15 metrics, the same for every device."""
    return _dumps({"metrics": [{"name": m.name, "dataType": m.data_type} for m in METRICS]})


def _int_field(record: Record, key: str) -> int:
    value = record.fields.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"{record.kind} field {key!r} is missing or not an integer")
    return value


def _bool_field(record: Record, key: str) -> bool:
    value = record.fields.get(key)
    if not isinstance(value, bool | int):
        raise PayloadError(f"{record.kind} field {key!r} is missing or not a boolean")
    return bool(value)


def _phases(record: Record, key: str) -> list[int]:
    value = record.fields.get(key)
    if (
        not isinstance(value, list)
        or len(value) != len(_PHASES)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise PayloadError(f"{record.kind} field {key!r} is not three integers")
    return value


def _metric(spec: MetricSpec, timestamp: int, value: int | bool) -> dict[str, Any]:
    return {"name": spec.name, "dataType": spec.data_type, "timestamp": timestamp, "value": value}


def ddata_payload(record: Record) -> bytes | None:
    """The DDATA payload of a record, or None for a configuration file (not published).

    Raises PayloadError when the record's fields do not match its kind.
    """
    ts = timestamp_ms(record.received_at)
    metrics: list[dict[str, Any]] = []
    if record.kind == "energy":
        valid = _bool_field(record, "measurement_valid")
        if valid:
            for key, specs in _ENERGY_FIELDS:
                values = _phases(record, key)
                metrics.extend(_metric(s, ts, v) for s, v in zip(specs, values, strict=True))
        metrics.append(_metric(SIGNAL, ts, record.link_budget))
        metrics.append(_metric(LINK_STATE, ts, valid))
    elif record.kind == "button":
        state = _int_field(record, "buttons_state")
        metrics.append(_metric(BUTTON_PRESSED, ts, bool(state & 0x01)))
        metrics.append(_metric(SIGNAL, ts, record.link_budget))
    else:
        return None
    return _dumps({"metrics": metrics})
