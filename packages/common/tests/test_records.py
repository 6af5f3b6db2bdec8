"""Frame entry -> Record or Rejection, checked against every ALP case of frames.json, and the
record kind and fields of every application file."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.entries import FILE_KINDS, FrameEntry, Record, encode
from gateway_common.records import Rejection, decode_alp, decode_entry, record_fields
from gateway_dash7 import (
    AddressType,
    ButtonConfigFile,
    ButtonFile,
    D7Status,
    EnergyConfigFile,
    EnergyFile,
    encode_return_file_data,
    encode_status_action,
    encode_unsolicited,
)

UID = bytes.fromhex("323636300039004C")


def _metric_value(record: Record, name: str):
    """What a vector's metric must be, computed from the decoded record by the metric's name."""
    fields = record.fields
    families = {
        "Énergie apparente": "apparent_energy_vah",
        "Énergie active": "active_energy_wh",
        "Intensité": "current_ma",
        "Tension": "voltage_v",
    }
    family, _, phase = name.partition("/Phase ")
    if family in families:
        return fields[families[family]][int(phase) - 1]
    if name == "Force du signal radio DASH7":
        return record.link_budget
    if name == "Bouton pressé":
        return bool(fields["buttons_state"] & 1)
    if name == "État de la liaison Modbus - DASH7":
        return fields["measurement_valid"]
    raise AssertionError(f"unknown metric {name}")


def _entry(alp: bytes, received_at: float = 1_700_000_000.25) -> dict[bytes, bytes]:
    return {b"d": encode(FrameEntry(alp=alp, received_at=received_at, counter=7))}


def _alp_cases(vectors):
    return [case for case in vectors if case.get("alp_hex")]


def test_vectors_have_alp_cases(vectors):
    assert len(_alp_cases(vectors)) >= 11


def test_every_alp_vector(vectors):
    for case in _alp_cases(vectors):
        alp = bytes.fromhex(case["alp_hex"])
        expect = case["expect"]
        outcome = decode_entry("1700000000250-3", _entry(alp))
        if "dead_letter" in expect:
            assert isinstance(outcome, Rejection), case["name"]
            assert outcome.reason == expect["dead_letter"], case["name"]
            assert outcome.raw == alp
            assert outcome.received_at == 1_700_000_000.25
            continue
        assert isinstance(outcome, Record), (case["name"], outcome)
        assert outcome.device_id == expect["device_id"], case["name"]
        assert outcome.kind == expect["file"], case["name"]
        assert outcome.frame_id == "1700000000250-3"
        assert outcome.received_at == 1_700_000_000.25
        for metric in expect.get("metrics", []):
            assert _metric_value(outcome, metric["name"]) == metric["value"], (
                case["name"],
                metric["name"],
            )
        for key in ("interval_s", "enabled"):
            if key in expect:
                assert outcome.fields[key] == expect[key], case["name"]


def test_energy_vector_fields_in_order(vectors):
    case = next(c for c in vectors if c["name"] == "energy_uid")
    record = decode_alp("1-0", bytes.fromhex(case["alp_hex"]), 0.0)
    assert isinstance(record, Record)
    values = [m["value"] for m in case["expect"]["metrics"]]
    fields = record.fields
    assert [
        *fields["apparent_energy_vah"],
        *fields["active_energy_wh"],
        *fields["current_ma"],
        *fields["voltage_v"],
    ] == values[:12]
    assert record.link_budget == values[12]
    assert fields["measurement_valid"] is values[13]
    assert record.rx_level == 57


def test_button_config_vector_matches_the_encoder(vectors):
    case = next(c for c in vectors if c["name"] == "button_config")
    alp = bytes.fromhex(case["alp_hex"])
    record = decode_alp("1-0", alp, 0.0)
    assert isinstance(record, Record)
    assert record.kind == "button_config"
    assert encode_return_file_data(61, ButtonConfigFile(**record.fields).encode()) in alp


def test_weak_signal_decodes(vectors):
    case = next(c for c in vectors if c["name"] == "energy_weak_signal")
    record = decode_alp("1-0", bytes.fromhex(case["alp_hex"]), 0.0)
    assert isinstance(record, Record)
    assert record.rx_level == 0x82


@pytest.mark.parametrize(
    ("address_type", "address", "expected"),
    [
        (AddressType.UID, bytes.fromhex("000B5700009151DC"), "B5700009151DC"),
        (AddressType.VID, b"\x00\x0a", "A"),
    ],
)
def test_the_device_is_the_sender_without_zero_padding(address_type, address, expected):
    record = decode_alp("1-0", _status_frame(address, address_type), 0.0)
    assert isinstance(record, Record)
    assert record.device_id == expected


def _status_frame(address: bytes, address_type: AddressType) -> bytes:
    return encode_unsolicited(
        51, b"\x00\x01\x01", D7Status(address=address, address_type=address_type)
    )


def test_noid_sender():
    outcome = decode_alp("1-0", _status_frame(b"", AddressType.NOID), 0.0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "unattributable sender (NOID)"


def test_missing_status():
    alp = encode_unsolicited(51, b"\x00\x01\x01", None)
    assert alp.endswith(bytes((0x62, 0xD7, 0)))
    outcome = decode_alp("1-0", alp, 0.0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "unattributable sender (no status)"


def test_partial_file():
    alp = encode_return_file_data(52, bytes(10), offset=20) + encode_status_action(D7Status(UID))
    outcome = decode_alp("1-0", alp, 0.0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "partial file data"
    assert outcome.detail == {"file_id": 52, "offset": 20, "length": 10}


def test_wrong_file_length():
    outcome = decode_alp("1-0", encode_unsolicited(52, bytes(66), D7Status(UID)), 0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "wrong EnergyFile length"
    assert "got 66" in outcome.detail["error"]


def test_malformed_alp():
    alp = _status_frame(UID, AddressType.UID)[:-1]
    outcome = decode_alp("1-0", alp, 3.5)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "malformed ALP: truncated interface status"
    assert "LEN 20" in outcome.detail["error"]
    assert (outcome.raw, outcome.received_at) == (alp, 3.5)


def test_a_rejected_frame_keeps_its_modem_counter():
    """So that `gatewayctl dead requeue` can put the whole frame entry back."""
    alp = _status_frame(UID, AddressType.UID)[:-1]
    outcome = decode_entry("1-0", _entry(alp))
    assert isinstance(outcome, Rejection)
    assert outcome.detail["counter"] == 7
    assert outcome.reason == "malformed ALP: truncated interface status"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"d": b"\xc1"}, "undecodable entry: not a msgpack entry"),
        ({b"d": msgpack.packb([1, 2])}, "undecodable entry: entry is not a map"),
        (
            {b"d": msgpack.packb({"v": 9, "t": "frame"})},
            "undecodable entry: unsupported schema version 9",
        ),
        (
            {b"d": msgpack.packb({"v": 1, "t": "frame", "alp": "text", "rx": 1.0, "cnt": 1})},
            "undecodable entry: field 'alp' is missing or has the wrong type",
        ),
        ({b"x": b"1"}, "undecodable entry: missing field d"),
        ({}, "undecodable entry: missing field d"),
    ],
)
def test_undecodable_entries(fields, reason):
    outcome = decode_entry("5-0", fields)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == reason
    assert outcome.raw == fields.get(b"d", b"")


# ------------------------------------------------------------------ file -> record fields

int64 = st.integers(-(1 << 63), (1 << 63) - 1)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
int16 = st.integers(-(1 << 15), (1 << 15) - 1)
byte = st.integers(0, 255)


@given(
    st.tuples(int64, int64, int64),
    st.tuples(int64, int64, int64),
    st.tuples(int32, int32, int32),
    st.tuples(int16, int16, int16),
    st.booleans(),
)
def test_energy_file(apparent, active, current, voltage, valid):
    kind, fields = record_fields(EnergyFile(apparent, active, current, voltage, valid))
    assert kind == "energy"
    assert fields == {
        "apparent_energy_vah": list(apparent),
        "active_energy_wh": list(active),
        "current_ma": list(current),
        "voltage_v": list(voltage),
        "measurement_valid": valid,
    }


@given(st.integers(0, (1 << 32) - 1), st.booleans())
def test_energy_config_file(interval_s, enabled):
    assert record_fields(EnergyConfigFile(interval_s, enabled)) == (
        "energy_config",
        {"interval_s": interval_s, "enabled": enabled},
    )


@given(byte, byte, byte)
def test_button_file(button_id, mask, state):
    assert record_fields(ButtonFile(button_id, mask, state)) == (
        "button",
        {"button_id": button_id, "mask": mask, "buttons_state": state},
    )


@given(byte, byte, byte, st.booleans())
def test_button_config_file(mask_0, mask_1, menu, enabled):
    assert record_fields(ButtonConfigFile(mask_0, mask_1, menu, enabled)) == (
        "button_config",
        {
            "transmit_mask_0": mask_0,
            "transmit_mask_1": mask_1,
            "button_control_menu": menu,
            "enabled": enabled,
        },
    )


def test_every_record_kind_has_a_file():
    files = [
        EnergyFile((0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)),
        EnergyConfigFile(),
        ButtonFile(0, 0, 0),
        ButtonConfigFile(0, 0, 0, enabled=False),
    ]
    assert {record_fields(file)[0] for file in files} == FILE_KINDS
