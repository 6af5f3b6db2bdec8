"""The application files (protocol.md section 3), against the simulator's encoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_decoder.files import FILE_SIZES, FileError, UnknownFileError, decode_file
from gateway_simulator import alp as sim

int64 = st.integers(-(1 << 63), (1 << 63) - 1)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
int16 = st.integers(-(1 << 15), (1 << 15) - 1)
byte = st.integers(0, 255)


def test_file_sizes():
    assert FILE_SIZES == {52: 67, 62: 5, 51: 3, 61: 4}


@given(
    st.tuples(int64, int64, int64),
    st.tuples(int64, int64, int64),
    st.tuples(int32, int32, int32),
    st.tuples(int16, int16, int16),
    st.booleans(),
)
def test_energy_file(apparent, active, current, voltage, valid):
    data = sim.energy_file(sim.Energy(apparent, active, current, voltage, valid))
    kind, fields = decode_file(52, data)
    assert kind == "energy"
    assert fields == {
        "apparent_energy_vah": list(apparent),
        "active_energy_wh": list(active),
        "current_ma": list(current),
        "voltage_v": list(voltage),
        "measurement_valid": valid,
    }


def test_energy_config_is_little_endian():
    kind, fields = decode_file(62, bytes.fromhex("58 02 00 00 01"))
    assert kind == "energy_config"
    assert fields == {"interval_s": 600, "enabled": True}  # big-endian would read 1476526080


@given(st.integers(0, (1 << 32) - 1), st.booleans())
def test_energy_config_file(interval_s, enabled):
    assert decode_file(62, sim.energy_config_file(interval_s, enabled)) == (
        "energy_config",
        {"interval_s": interval_s, "enabled": enabled},
    )


@given(byte, byte, byte)
def test_button_file(button_id, mask, state):
    assert decode_file(51, sim.button_file(button_id, mask, state)) == (
        "button",
        {"button_id": button_id, "mask": mask, "buttons_state": state},
    )


@given(byte, byte, byte, st.booleans())
def test_button_config_file(mask_0, mask_1, menu, enabled):
    data = sim.button_config_file(mask_0, mask_1, menu, enabled)
    assert decode_file(61, data) == (
        "button_config",
        {
            "transmit_mask_0": mask_0,
            "transmit_mask_1": mask_1,
            "button_control_menu": menu,
            "enabled": enabled,
        },
    )


@pytest.mark.parametrize(("file_id", "size"), sorted(FILE_SIZES.items()))
def test_wrong_length(file_id, size):
    for wrong in (0, size - 1, size + 1):
        with pytest.raises(FileError) as info:
            decode_file(file_id, bytes(wrong))
        assert info.value.reason.startswith("wrong ")
        assert f"got {wrong}" in str(info.value)
        assert not isinstance(info.value, UnknownFileError)


@given(st.integers(0, 255).filter(lambda i: i not in FILE_SIZES), st.binary(max_size=80))
def test_unknown_file(file_id, data):
    with pytest.raises(UnknownFileError) as info:
        decode_file(file_id, data)
    assert info.value.reason == f"unknown file id {file_id}"
