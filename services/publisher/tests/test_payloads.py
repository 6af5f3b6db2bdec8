"""DBIRTH / DDATA payloads against protocol.md section 4 and the test vectors.

The records are built the way the decoder builds them, straight from the vectors' bytes
(parsed here with struct, independently of the decoder), so a wrong metric order, name, type
or value source fails.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.entries import Record
from gateway_dash7 import crc16
from gateway_publisher.payloads import (
    ACTIVE,
    APPARENT,
    BUTTON_PRESSED,
    CURRENT,
    LINK_STATE,
    METRICS,
    SIGNAL,
    VOLTAGE,
    MetricSpec,
    PayloadError,
    dbirth_payload,
    ddata_payload,
    timestamp_ms,
)

NAMES = [
    "Énergie apparente/Phase 1",
    "Énergie apparente/Phase 2",
    "Énergie apparente/Phase 3",
    "Énergie active/Phase 1",
    "Énergie active/Phase 2",
    "Énergie active/Phase 3",
    "Intensité/Phase 1",
    "Intensité/Phase 2",
    "Intensité/Phase 3",
    "Tension/Phase 1",
    "Tension/Phase 2",
    "Tension/Phase 3",
    "Force du signal radio DASH7",
    "Bouton pressé",
    "État de la liaison Modbus - DASH7",
]
TYPES = ["Long"] * 6 + ["Integer"] * 3 + ["Short"] * 3 + ["Short", "Boolean", "Boolean"]
RECEIVED_AT = 1_767_225_600.123  # 2026-01-01T00:00:00.123Z
KINDS = {0x34: "energy", 0x3E: "energy_config", 0x33: "button", 0x3D: "button_config"}


# ------------------------------------------------------------------ vector -> record


def alp_frames(frame_hex: str) -> list[bytes]:
    """ALP payloads of the CRC-valid ALP_DATA frames in a byte string (resync on C0 00)."""
    data = bytes.fromhex(frame_hex)
    found, i = [], 0
    while (i := data.find(b"\xc0\x00", i)) >= 0 and i + 7 <= len(data):
        length = data[i + 4]
        payload = data[i + 7 : i + 7 + length]
        crc = int.from_bytes(data[i + 5 : i + 7], "big")
        if len(payload) == length and crc16(payload) == crc:
            if data[i + 3] == 1:
                found.append(payload)
            i += 7 + length
        else:
            i += 1
    return found


def length_operand(data: bytes, i: int) -> tuple[int, int]:
    extra = data[i] >> 6
    value = data[i] & 0x3F
    for b in data[i + 1 : i + 1 + extra]:
        value = value << 8 | b
    return value, i + 1 + extra


def record_from_alp(alp: bytes, received_at: float) -> Record:
    assert alp[0] == 0x20
    file_id = alp[1]
    _offset, i = length_operand(alp, 2)
    length, i = length_operand(alp, i)
    content, i = alp[i : i + length], i + length
    assert alp[i : i + 2] == b"\x62\xd7"
    status = alp[i + 3 : i + 3 + alp[i + 2]]
    rx_level, link_budget, addressee = status[3], status[4], status[10]
    assert (addressee >> 4) & 0x3 in (2, 3)  # UID or VID: attributable
    device_id = f"{int.from_bytes(status[12:], 'big'):X}"
    kind = KINDS[file_id]
    fields: dict[str, Any]
    if kind == "energy":
        v = struct.unpack("<3q3q3i3hB", content)
        fields = {
            "apparent_energy_vah": list(v[0:3]),
            "active_energy_wh": list(v[3:6]),
            "current_ma": list(v[6:9]),
            "voltage_v": list(v[9:12]),
            "measurement_valid": bool(v[12]),
        }
    elif kind == "energy_config":
        interval, enabled = struct.unpack("<IB", content)
        fields = {"interval_s": interval, "enabled": bool(enabled)}
    elif kind == "button":
        b_id, mask, state = struct.unpack("<BBB", content)
        fields = {"button_id": b_id, "mask": mask, "buttons_state": state}
    else:
        m0, m1, menu, enabled = struct.unpack("<BBBB", content)
        fields = {
            "transmit_mask_0": m0,
            "transmit_mask_1": m1,
            "button_control_menu": menu,
            "enabled": bool(enabled),
        }
    return Record(device_id, kind, fields, link_budget, rx_level, received_at, "1-0")  # type: ignore[arg-type]


def vector_records(vectors: list[dict[str, Any]], publish: str | None) -> list[tuple[str, Any]]:
    cases = []
    for case in vectors:
        expect = case["expect"]
        if expect.get("publish") != publish or "file" not in expect:
            continue
        frames = alp_frames(case["frame_hex"])
        assert len(frames) == expect.get("count", 1), case["name"]
        cases.append((case["name"], (record_from_alp(frames[-1], RECEIVED_AT), expect)))
    return cases


# ------------------------------------------------------------------ DDATA


def test_every_publishable_vector_gives_the_expected_metrics(vectors) -> None:
    cases = vector_records(vectors, "DDATA")
    assert len(cases) >= 7  # energy x4, invalid, buttons, bad CRC then good
    for name, (record, expect) in cases:
        assert record.device_id == expect["device_id"], name
        assert record.kind == expect["file"], name
        payload = ddata_payload(record)
        assert payload is not None, name
        metrics = json.loads(payload)["metrics"]
        expected = [
            {
                "name": m["name"],
                "dataType": m["dataType"],
                "timestamp": 1_767_225_600_123,
                "value": m["value"],
            }
            for m in expect["metrics"]
        ]
        assert metrics == expected, name
        # JSON true/false, never 0/1, for Boolean metrics
        for metric in metrics:
            assert isinstance(metric["value"], bool) == (metric["dataType"] == "Boolean"), name


def test_energy_ddata_has_metrics_1_to_13_then_15(vectors) -> None:
    record, _ = dict(vector_records(vectors, "DDATA"))["energy_uid"]
    metrics = json.loads(ddata_payload(record) or b"")["metrics"]
    assert [m["name"] for m in metrics] == NAMES[:13] + NAMES[14:]
    assert [m["dataType"] for m in metrics] == TYPES[:13] + TYPES[14:]


def test_invalid_measurement_carries_only_signal_and_link_state(vectors) -> None:
    record, _ = dict(vector_records(vectors, "DDATA"))["energy_invalid"]
    metrics = json.loads(ddata_payload(record) or b"")["metrics"]
    assert [(m["name"], m["value"]) for m in metrics] == [(NAMES[12], 71), (NAMES[14], False)]


def test_button_ddata_is_metric_14_then_13(vectors) -> None:
    record, _ = dict(vector_records(vectors, "DDATA"))["button_press"]
    metrics = json.loads(ddata_payload(record) or b"")["metrics"]
    assert [m["name"] for m in metrics] == [NAMES[13], NAMES[12]]


@pytest.mark.parametrize(("state", "pressed"), [(0, False), (1, True), (6, False), (7, True)])
def test_button_pressed_is_bit_0_of_buttons_state(state: int, pressed: bool) -> None:
    record = Record("AB", "button", {"buttons_state": state}, 50, 60, 1.0, "1-0")
    assert json.loads(ddata_payload(record) or b"")["metrics"][0]["value"] is pressed


def test_configuration_files_are_not_published(vectors) -> None:
    cases = [case for case in vectors if case["expect"].get("file", "").endswith("_config")]
    assert {c["expect"]["file"] for c in cases} == {"energy_config", "button_config"}
    for case in cases:
        record = record_from_alp(alp_frames(case["frame_hex"])[-1], RECEIVED_AT)
        assert record.kind == case["expect"]["file"]
        assert ddata_payload(record) is None, case["name"]


def test_same_record_gives_the_same_bytes(vectors) -> None:
    for _name, (record, _) in vector_records(vectors, "DDATA"):
        twin = Record(
            record.device_id,
            record.kind,
            dict(record.fields),
            record.link_budget,
            record.rx_level,
            record.received_at,
            "other-frame",
        )
        assert ddata_payload(record) == ddata_payload(twin)


def test_payload_is_compact_utf8_json() -> None:
    record = Record("AB", "button", {"buttons_state": 1}, 50, 60, 1.5, "1-0")
    payload = ddata_payload(record) or b""
    assert b" " not in payload.replace("Bouton pressé".encode(), b"").replace(
        b"Force du signal radio DASH7", b""
    )
    assert "Bouton pressé".encode() in payload


@pytest.mark.parametrize(
    ("received_at", "expected_ms"),
    [(1_700_000_000.001, 1_700_000_000_001), (1_767_225_600.999, 1_767_225_600_999), (0.0, 0)],
)
def test_timestamp_is_the_receive_time_in_integer_ms(received_at: float, expected_ms: int) -> None:
    assert timestamp_ms(received_at) == expected_ms
    record = Record("AB", "button", {"buttons_state": 1}, 50, 60, received_at, "1-0")
    stamps = {m["timestamp"] for m in json.loads(ddata_payload(record) or b"")["metrics"]}
    assert stamps == {expected_ms}
    assert all(isinstance(s, int) for s in stamps)


@pytest.mark.parametrize(
    "fields",
    [
        {"measurement_valid": True},
        {
            "apparent_energy_vah": [1, 2],
            "active_energy_wh": [1, 2, 3],
            "current_ma": [1, 2, 3],
            "voltage_v": [1, 2, 3],
            "measurement_valid": True,
        },
        {
            "apparent_energy_vah": [1, 2, True],
            "active_energy_wh": [1, 2, 3],
            "current_ma": [1, 2, 3],
            "voltage_v": [1, 2, 3],
            "measurement_valid": True,
        },
        {},
    ],
)
def test_malformed_energy_fields_raise_payload_error(fields: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        ddata_payload(Record("AB", "energy", fields, 50, 60, 1.0, "1-0"))


def test_malformed_button_fields_raise_payload_error() -> None:
    with pytest.raises(PayloadError):
        ddata_payload(Record("AB", "button", {"buttons_state": [1]}, 50, 60, 1.0, "1-0"))


int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    apparent=st.lists(int64, min_size=3, max_size=3),
    active=st.lists(int64, min_size=3, max_size=3),
    current=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=3, max_size=3),
    voltage=st.lists(st.integers(-(2**15), 2**15 - 1), min_size=3, max_size=3),
    link_budget=st.integers(0, 255),
    received_at=st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
)
def test_any_valid_energy_record_round_trips(
    apparent, active, current, voltage, link_budget, received_at
) -> None:
    fields = {
        "apparent_energy_vah": apparent,
        "active_energy_wh": active,
        "current_ma": current,
        "voltage_v": voltage,
        "measurement_valid": True,
    }
    record = Record("AB", "energy", fields, link_budget, 60, received_at, "1-0")  # type: ignore[arg-type]
    metrics = json.loads(ddata_payload(record) or b"")["metrics"]
    assert [m["value"] for m in metrics] == [
        *apparent,
        *active,
        *current,
        *voltage,
        link_budget,
        True,
    ]
    assert {m["timestamp"] for m in metrics} == {round(received_at * 1000)}


# ------------------------------------------------------------------ DBIRTH


def test_dbirth_declares_the_15_metrics_in_order() -> None:
    body = json.loads(dbirth_payload())
    assert body == {
        "metrics": [{"name": n, "dataType": t} for n, t in zip(NAMES, TYPES, strict=True)]
    }
    assert [m.name for m in METRICS] == NAMES
    allowed = {"Integer", "Short", "Long", "Double", "Float", "Boolean", "String"}
    assert {m["dataType"] for m in body["metrics"]} <= allowed


# ------------------------------------------------------------------ byte for byte json.dumps
# The payload is concatenated from precomputed text; it must stay exactly what json.dumps
# of the structure protocol.md section 4 specifies gives.

_ENERGY = (
    ("apparent_energy_vah", APPARENT),
    ("active_energy_wh", ACTIVE),
    ("current_ma", CURRENT),
    ("voltage_v", VOLTAGE),
)


def reference(record: Record) -> bytes | None:
    """The specified structure, serialised by json.dumps (the former implementation)."""
    ts = round(record.received_at * 1000)

    def metric(spec: MetricSpec, value: Any) -> dict[str, Any]:
        return {"name": spec.name, "dataType": spec.data_type, "timestamp": ts, "value": value}

    metrics: list[dict[str, Any]] = []
    if record.kind == "energy":
        valid = bool(record.fields["measurement_valid"])
        if valid:
            for key, specs in _ENERGY:
                values = record.fields[key]
                assert isinstance(values, list)
                metrics.extend(metric(s, v) for s, v in zip(specs, values, strict=True))
        metrics.append(metric(SIGNAL, record.link_budget))
        metrics.append(metric(LINK_STATE, valid))
    elif record.kind == "button":
        state = record.fields["buttons_state"]
        assert isinstance(state, int)
        metrics.append(metric(BUTTON_PRESSED, bool(state & 1)))
        metrics.append(metric(SIGNAL, record.link_budget))
    else:
        return None
    text = json.dumps({"metrics": metrics}, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def test_every_vector_gives_the_json_dumps_bytes(vectors) -> None:
    cases = vector_records(vectors, "DDATA") + vector_records(vectors, None)
    assert len(cases) >= 7
    for name, (record, _) in cases:
        assert ddata_payload(record) == reference(record), name


class Level(enum.IntEnum):
    HIGH = 7


int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
phases = st.lists(st.one_of(int64, st.just(Level.HIGH)), min_size=3, max_size=3)
received_at = st.one_of(
    st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False),
    st.just(RECEIVED_AT),
    st.integers(min_value=0, max_value=4_102_444_800),
)


@given(
    apparent=phases,
    active=phases,
    current=phases,
    voltage=phases,
    valid=st.one_of(st.booleans(), st.integers(0, 3)),
    link_budget=st.one_of(st.integers(0, 255), st.booleans()),
    at=received_at,
    device=st.text(min_size=1, max_size=16),
)
def test_any_energy_record_gives_the_json_dumps_bytes(
    apparent, active, current, voltage, valid, link_budget, at, device
) -> None:
    fields = {
        "apparent_energy_vah": apparent,
        "active_energy_wh": active,
        "current_ma": current,
        "voltage_v": voltage,
        "measurement_valid": valid,
    }
    record = Record(device, "energy", fields, link_budget, 57, at, "1-0")  # type: ignore[arg-type]
    assert ddata_payload(record) == reference(record)


@given(state=st.integers(0, 255), link_budget=st.integers(0, 255), at=received_at)
def test_any_button_record_gives_the_json_dumps_bytes(state, link_budget, at) -> None:
    record = Record("AB", "button", {"buttons_state": state}, link_budget, 57, at, "1-0")
    assert ddata_payload(record) == reference(record)
