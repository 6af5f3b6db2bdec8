"""SCorp-io JSON payloads (docs/protocol.md section 4), built from records; pure functions.

The same record always gives the same bytes, so a record republished after a crash or a
reconnect carries the same payload and the same receive timestamp.

With the downlink on (`GATEWAY_DOWNLINK=true`), DBIRTH declares two metrics more, 16
`Intervalle de mesure` (Integer) and 17 `Mesure activée` (Boolean), and each EnergyConfigFile
is a DDATA of those two; off (the default), the 15-metric contract is untouched, byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from gateway_common.entries import Record

__all__ = [
    "BUTTON_PRESSED",
    "CONFIG_METRICS",
    "ENABLED",
    "INTERVAL",
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

INTERVAL: Final = MetricSpec("Intervalle de mesure", "Integer")
ENABLED: Final = MetricSpec("Mesure activée", "Boolean")

#: The 15 metrics every DBIRTH declares, in the order SCorp-io projects were configured with.
METRICS: Final = (*APPARENT, *ACTIVE, *CURRENT, *VOLTAGE, SIGNAL, BUTTON_PRESSED, LINK_STATE)
#: Metrics 16 and 17, declared and published only with the downlink on: a device's EnergyConfigFile
#: (the values it confirmed), and what a DCMD sets.
CONFIG_METRICS: Final = (INTERVAL, ENABLED)

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


def dbirth_payload(*, downlink: bool = False) -> bytes:
    """The DBIRTH payload: the declaration of all 15 metrics (17 with the downlink on), the
    same for every device."""
    declared = (*METRICS, *CONFIG_METRICS) if downlink else METRICS
    return _dumps({"metrics": [{"name": m.name, "dataType": m.data_type} for m in declared]})


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


def _phases(record: Record, key: str) -> tuple[int, int, int]:
    """The three values, as plain ints (json.dumps writes an int subclass as its int)."""
    value = record.fields.get(key)
    if isinstance(value, list) and len(value) == len(_PHASES):
        a, b, c = value
        if type(a) is int and type(b) is int and type(c) is int:  # the usual case, quickly
            return a, b, c
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return int(a), int(b), int(c)
    raise PayloadError(f"{record.kind} field {key!r} is not three integers")


def _prefix(spec: MetricSpec) -> str:
    """`{"name":…,"dataType":…,"timestamp":`: what json.dumps writes before the timestamp."""
    name = json.dumps(spec.name, ensure_ascii=False)
    return f'{{"name":{name},"dataType":{json.dumps(spec.data_type)},"timestamp":'


#: The fixed text of each metric, built once: a payload is concatenated, not serialised.
_PREFIX: Final = {spec: _prefix(spec) for spec in (*METRICS, *CONFIG_METRICS)}
_VALUE: Final = ',"value":'
_ENERGY_PREFIXES: Final = tuple(
    (key, tuple(_PREFIX[s] for s in specs)) for key, specs in _ENERGY_FIELDS
)


def _json_int(value: int) -> str:
    return int.__repr__(value)  # what json.dumps writes for an int (or an int subclass)


def _json_bool(value: bool) -> str:
    return "true" if value else "false"


def _json_scalar(value: int) -> str:
    """An int or a bool (a bool is an int to the record's validation)."""
    return _json_bool(value) if isinstance(value, bool) else _json_int(value)


def ddata_payload(record: Record, *, downlink: bool = False) -> bytes | None:
    """The DDATA payload of a record, or None for a file that is not published (the
    configuration files; with the downlink on, an EnergyConfigFile is metrics 16 and 17).

    Byte for byte what `json.dumps({"metrics": [{"name", "dataType", "timestamp", "value"},
    …]}, ensure_ascii=False, separators=(",", ":"))` gives, built from precomputed text.
    Raises PayloadError when the record's fields do not match its kind.
    """
    ts = f"{timestamp_ms(record.received_at)}{_VALUE}"
    signal = _PREFIX[SIGNAL] + ts + _json_scalar(record.link_budget) + "}"
    parts: list[str] = []
    if record.kind == "energy":
        valid = _bool_field(record, "measurement_valid")
        if valid:
            for key, (p1, p2, p3) in _ENERGY_PREFIXES:
                v1, v2, v3 = _phases(record, key)
                parts.append(f"{p1}{ts}{v1}}},{p2}{ts}{v2}}},{p3}{ts}{v3}}}")
        parts.append(signal)
        parts.append(_PREFIX[LINK_STATE] + ts + _json_bool(valid) + "}")
    elif record.kind == "button":
        state = _int_field(record, "buttons_state")
        parts.append(_PREFIX[BUTTON_PRESSED] + ts + _json_bool(bool(state & 0x01)) + "}")
        parts.append(signal)
    elif record.kind == "energy_config" and downlink:
        interval = _int_field(record, "interval_s")
        enabled = record.fields.get("enabled")
        if not isinstance(enabled, bool):
            raise PayloadError("energy_config field 'enabled' is missing or not a boolean")
        parts.append(_PREFIX[INTERVAL] + ts + _json_int(interval) + "}")
        parts.append(_PREFIX[ENABLED] + ts + _json_bool(enabled) + "}")
    else:
        return None
    return ('{"metrics":[' + ",".join(parts) + "]}").encode("utf-8")
