"""Frame entry -> Record or Rejection, checked against every ALP case of frames.json."""

from __future__ import annotations

import msgpack
import pytest

from gateway_common.entries import FrameEntry, Record, encode
from gateway_decoder.decoding import Rejection, decode_alp, decode_entry, device_id
from gateway_simulator import alp as sim

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
    assert sim.return_file_data(61, sim.button_config_file(**record.fields)) in alp


def test_weak_signal_decodes(vectors):
    case = next(c for c in vectors if c["name"] == "energy_weak_signal")
    record = decode_alp("1-0", bytes.fromhex(case["alp_hex"]), 0.0)
    assert isinstance(record, Record)
    assert record.rx_level == 0x82


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (bytes.fromhex("000B57000091 51DC".replace(" ", "")), "B5700009151DC"),
        (UID, "323636300039004C"),
        (b"\xab\xcd", "ABCD"),
        (b"\x00\x0a", "A"),
        (bytes(8), "0"),
    ],
)
def test_device_id(address, expected):
    assert device_id(address) == expected


def _status_frame(address: bytes, address_type: sim.AddressType) -> bytes:
    return sim.unsolicited_message(
        51, b"\x00\x01\x01", sim.InterfaceStatus(address=address, address_type=address_type)
    )


def test_noid_sender():
    outcome = decode_alp("1-0", _status_frame(b"", sim.AddressType.NOID), 0.0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "unattributable sender (NOID)"


def test_missing_status():
    alp = sim.return_file_data(51, b"\x00\x01\x01") + bytes((0x62, 0xD7, 0))
    outcome = decode_alp("1-0", alp, 0.0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "unattributable sender (no status)"


def test_partial_file():
    alp = sim.return_file_data(52, bytes(10), offset=20) + sim.InterfaceStatus(UID).encode()
    outcome = decode_alp("1-0", alp, 0.0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "partial file data"
    assert outcome.detail == {"file_id": 52, "offset": 20, "length": 10}


def test_wrong_file_length():
    outcome = decode_alp("1-0", sim.unsolicited_message(52, bytes(66), sim.InterfaceStatus(UID)), 0)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "wrong EnergyFile length"
    assert "got 66" in outcome.detail["error"]


def test_malformed_alp():
    alp = _status_frame(UID, sim.AddressType.UID)[:-1]
    outcome = decode_alp("1-0", alp, 3.5)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "malformed ALP: truncated interface status"
    assert "LEN 20" in outcome.detail["error"]
    assert (outcome.raw, outcome.received_at) == (alp, 3.5)


def test_a_rejected_frame_keeps_its_modem_counter():
    """So that `gatewayctl dead requeue` can put the whole frame entry back."""
    alp = _status_frame(UID, sim.AddressType.UID)[:-1]
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
