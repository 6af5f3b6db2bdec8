"""The application files (protocol.md section 3): each layout decoded, and encoded back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_dash7 import (
    BUTTON_CONFIG_FILE_ID,
    BUTTON_FILE_ID,
    ENERGY_CONFIG_FILE_ID,
    ENERGY_FILE_ID,
    FILE_NAMES,
    FILE_SIZES,
    AppFile,
    ButtonConfigFile,
    ButtonFile,
    EnergyConfigFile,
    EnergyFile,
    FileError,
    UnknownFileError,
    decode_file,
)

int64 = st.integers(-(1 << 63), (1 << 63) - 1)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
int16 = st.integers(-(1 << 15), (1 << 15) - 1)
byte = st.integers(0, 255)

energy_files = st.builds(
    EnergyFile,
    st.tuples(int64, int64, int64),
    st.tuples(int64, int64, int64),
    st.tuples(int32, int32, int32),
    st.tuples(int16, int16, int16),
    st.booleans(),
)
energy_config_files = st.builds(EnergyConfigFile, st.integers(0, (1 << 32) - 1), st.booleans())
button_files = st.builds(ButtonFile, byte, byte, byte)
button_config_files = st.builds(ButtonConfigFile, byte, byte, byte, st.booleans())
app_files = energy_files | energy_config_files | button_files | button_config_files


def test_file_sizes():
    assert FILE_SIZES == {52: 67, 62: 5, 51: 3, 61: 4}
    assert FILE_NAMES == {
        52: "EnergyFile",
        62: "EnergyConfigFile",
        51: "ButtonFile",
        61: "ButtonConfigFile",
    }


@given(app_files)
def test_every_file_round_trips(file: AppFile):
    data = file.encode()
    assert len(data) == FILE_SIZES[file.file_id]
    assert decode_file(file.file_id, data) == file
    assert type(decode_file(file.file_id, data)) is type(file)


@given(
    st.tuples(int64, int64, int64),
    st.tuples(int64, int64, int64),
    st.tuples(int32, int32, int32),
    st.tuples(int16, int16, int16),
    st.booleans(),
)
def test_energy_file(apparent, active, current, voltage, valid):
    file = decode_file(52, EnergyFile(apparent, active, current, voltage, valid).encode())
    assert isinstance(file, EnergyFile)
    assert file.file_id == ENERGY_FILE_ID
    assert file.apparent_energy_vah == apparent
    assert file.active_energy_wh == active
    assert file.current_ma == current
    assert file.voltage_v == voltage
    assert file.measurement_valid is valid


def test_energy_file_layout_is_little_endian():
    data = EnergyFile(
        (1, 2, 3), (4, 5, 6), (7, 8, 9), (230, -1, 0), measurement_valid=False
    ).encode()
    assert data[:8] == bytes.fromhex("0100000000000000")
    assert data[48:54] == bytes.fromhex("070000000800")
    assert data[60:67] == bytes.fromhex("e600 ffff 0000 00".replace(" ", ""))


def test_energy_config_is_little_endian():
    file = decode_file(62, bytes.fromhex("58 02 00 00 01"))
    assert file == EnergyConfigFile(interval_s=600, enabled=True)  # big-endian: 1476526080
    assert EnergyConfigFile().encode() == bytes.fromhex("58 02 00 00 01")


@given(st.integers(0, (1 << 32) - 1), st.booleans())
def test_energy_config_file(interval_s, enabled):
    assert decode_file(62, EnergyConfigFile(interval_s, enabled).encode()) == EnergyConfigFile(
        interval_s, enabled
    )


@given(byte, byte, byte)
def test_button_file(button_id, mask, state):
    data = ButtonFile(button_id, mask, state).encode()
    assert data == bytes((button_id, mask, state))
    assert decode_file(51, data) == ButtonFile(button_id=button_id, mask=mask, buttons_state=state)


@given(byte, byte, byte, st.booleans())
def test_button_config_file(mask_0, mask_1, menu, enabled):
    data = ButtonConfigFile(mask_0, mask_1, menu, enabled).encode()
    assert data == bytes((mask_0, mask_1, menu, int(enabled)))
    assert decode_file(61, data) == ButtonConfigFile(
        transmit_mask_0=mask_0, transmit_mask_1=mask_1, button_control_menu=menu, enabled=enabled
    )


@pytest.mark.parametrize(
    ("file_id", "offset"),
    [(ENERGY_FILE_ID, 66), (ENERGY_CONFIG_FILE_ID, 4), (BUTTON_CONFIG_FILE_ID, 3)],
)
def test_any_nonzero_flag_byte_is_true(file_id, offset):
    for flag in (1, 2, 0x80, 0xFF):
        data = bytearray(FILE_SIZES[file_id])
        data[offset] = flag
        file = decode_file(file_id, bytes(data))
        assert file[-1] is True


@pytest.mark.parametrize(
    "file",
    [
        EnergyFile((1 << 63, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)),
        EnergyFile((0, 0, 0), (0, 0, 0), (0, 0, 0), (1 << 15, 0, 0)),
        EnergyFile((0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)),  # type: ignore[arg-type]
        EnergyConfigFile(-1),
        ButtonFile(256, 0, 0),
        ButtonConfigFile(0, 0, -1, enabled=True),
    ],
)
def test_values_that_do_not_fit_are_refused(file: AppFile):
    with pytest.raises(ValueError, match=f"cannot encode {type(file).__name__}"):
        file.encode()


@pytest.mark.parametrize(("file_id", "size"), sorted(FILE_SIZES.items()))
def test_wrong_length(file_id, size):
    for wrong in (0, size - 1, size + 1):
        with pytest.raises(FileError) as info:
            decode_file(file_id, bytes(wrong))
        assert info.value.reason.startswith("wrong ")
        assert info.value.reason == f"wrong {FILE_NAMES[file_id]} length"
        assert f"got {wrong}" in str(info.value)
        assert not isinstance(info.value, UnknownFileError)


@given(st.integers(0, 255).filter(lambda i: i not in FILE_SIZES), st.binary(max_size=80))
def test_unknown_file(file_id, data):
    with pytest.raises(UnknownFileError) as info:
        decode_file(file_id, data)
    assert info.value.reason == f"unknown file id {file_id}"
    assert isinstance(info.value, ValueError)


def test_file_ids():
    assert (ENERGY_FILE_ID, ENERGY_CONFIG_FILE_ID, BUTTON_FILE_ID, BUTTON_CONFIG_FILE_ID) == (
        0x34,
        0x3E,
        0x33,
        0x3D,
    )
