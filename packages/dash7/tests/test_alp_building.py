"""The ALP builders and the D7 interface status both ways: what is built parses back to the
same values; and the DEVICE_ID of a sender."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_dash7 import (
    ADDRESS_SIZE,
    AddressType,
    AlpError,
    D7Status,
    EnergyFile,
    UnsolicitedMessage,
    device_id,
    encode_length_operand,
    encode_return_file_data,
    encode_status_action,
    encode_unsolicited,
    parse_unsolicited,
)

UID = bytes.fromhex("323636300039004C")


# ------------------------------------------------------------------ building


def test_length_operand_examples() -> None:
    assert encode_length_operand(67) == bytes.fromhex("4043")
    assert encode_length_operand(3) == bytes.fromhex("03")
    assert encode_length_operand(0) == b"\x00"
    assert encode_length_operand(0x3FFF) == bytes.fromhex("7FFF")
    assert encode_length_operand(0x4000) == bytes.fromhex("804000")
    assert encode_length_operand((1 << 30) - 1) == bytes.fromhex("FFFFFFFF")
    for value in (-1, 1 << 30):
        with pytest.raises(ValueError, match="cannot be encoded"):
            encode_length_operand(value)


def test_energy_uid_vector_is_reproduced(vectors) -> None:
    case = next(c for c in vectors if c["name"] == "energy_uid")
    status = D7Status(
        address=UID,
        rx_level=0x39,
        link_budget=71,
        fifo_token=0x49,
        sequence=0,
        response_timeout=0xA9,
        access_class=0x01,
        channel_header=0x32,
        channel_index=0,
    )
    energy = EnergyFile(
        (1234567, 2345678, 3456789), (1000000, 2000000, 3000000), (12345, -200, 0), (230, 231, 229)
    )
    assert encode_unsolicited(52, energy.encode(), status) == bytes.fromhex(case["alp_hex"])


def test_address_size_is_checked() -> None:
    with pytest.raises(ValueError, match="VID"):
        D7Status(address=b"\x01", address_type=AddressType.VID).encode()


@pytest.mark.parametrize(
    "field",
    [
        "channel_header",
        "rx_level",
        "link_budget",
        "target_rx_level",
        "flags",
        "fifo_token",
        "sequence",
        "response_timeout",
        "access_class",
    ],
)
def test_status_bytes_out_of_range_are_refused(field) -> None:
    for value in (-1, 256):
        with pytest.raises(ValueError, match="out of range"):
            D7Status(UID)._replace(**{field: value}).encode()


def test_status_wider_fields_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        D7Status(UID, channel_index=0x10000).encode()
    with pytest.raises(ValueError, match="NLS method"):
        D7Status(UID, nls_method=16).encode()


# ------------------------------------------------------------------ round trips

_byte = st.integers(0, 255)


@st.composite
def statuses(draw: st.DrawFn) -> D7Status:
    """Any D7 interface status the wire can carry."""
    address_type = draw(st.sampled_from(list(AddressType)))
    size = ADDRESS_SIZE[address_type]
    return D7Status(
        address=draw(st.binary(min_size=size, max_size=size)),
        address_type=address_type,
        channel_header=draw(_byte),
        channel_index=draw(st.integers(0, 0xFFFF)),
        rx_level=draw(_byte),
        link_budget=draw(_byte),
        target_rx_level=draw(_byte),
        flags=draw(_byte),
        fifo_token=draw(_byte),
        sequence=draw(_byte),
        response_timeout=draw(_byte),
        nls_method=draw(st.integers(0, 15)),
        access_class=draw(_byte),
    )


@given(statuses())
def test_status_round_trip(status: D7Status) -> None:
    encoded = status.encode()
    assert len(encoded) == 12 + ADDRESS_SIZE[status.address_type]
    assert D7Status.decode(encoded) == status


@given(statuses() | st.none())
def test_status_action_round_trip(status: D7Status | None) -> None:
    raw = encode_return_file_data(51, b"\x00\x01\x01") + encode_status_action(status)
    assert parse_unsolicited(raw).status == status


@given(
    file_id=_byte,
    data=st.binary(max_size=300),
    offset=st.integers(0, (1 << 30) - 1),
    status=statuses() | st.none(),
)
def test_unsolicited_message_round_trip(file_id, data, offset, status) -> None:
    raw = encode_unsolicited(file_id, data, status, offset)
    assert parse_unsolicited(raw) == UnsolicitedMessage(file_id, offset, data, status)


@given(st.binary(max_size=30))
def test_status_decode_raises_only_alp_error(data: bytes) -> None:
    try:
        status = D7Status.decode(data)
    except AlpError:
        return
    # What decodes encodes back to the same bytes, but for the addressee control's bits 7-6,
    # which the status does not carry.
    expected = bytearray(data)
    expected[10] &= 0x3F
    assert status.encode() == bytes(expected)


# ------------------------------------------------------------------ DEVICE_ID


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
