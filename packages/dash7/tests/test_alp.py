"""The ALP parser: vectors, length operands, truncation, arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway_dash7 import (
    AddressType,
    AlpError,
    D7Status,
    encode_length_operand,
    encode_return_file_data,
    encode_status_action,
    encode_unsolicited,
    parse_length_operand,
    parse_unsolicited,
)

UID = bytes.fromhex("323636300039004C")


def _alp(vectors, name: str) -> bytes:
    case = next(c for c in vectors if c["name"] == name)
    return bytes.fromhex(case["alp_hex"])


def _message(file_id: int = 51, data: bytes = b"\x00\x01\x01", **status) -> bytes:
    status.setdefault("address", UID)
    return encode_unsolicited(file_id, data, D7Status(**status))


def test_energy_vector_fields(vectors):
    message = parse_unsolicited(_alp(vectors, "energy_uid"))
    assert message.file_id == 52
    assert message.offset == 0
    assert len(message.data) == 67
    status = message.status
    assert status is not None
    assert status.channel_header == 0x32
    assert (status.channel_band, status.channel_class, status.channel_coding) == (3, 0, 2)
    assert status.channel_index == 0
    assert status.rx_level == 57
    assert status.link_budget == 71
    assert status.target_rx_level == 80
    assert status.flags == 0
    assert [status.nls, status.missed, status.retry, status.unicast] == [False] * 4
    assert status.fifo_token == 0x49
    assert status.sequence == 0
    assert status.response_timeout == 0xA9
    assert status.address_type is AddressType.UID
    assert status.nls_method == 0
    assert status.access_class == 1
    assert status.address == UID


def test_weak_signal_is_unsigned(vectors):
    status = parse_unsolicited(_alp(vectors, "energy_weak_signal")).status
    assert status is not None
    assert status.rx_level == 0x82
    assert status.link_budget == 150


@pytest.mark.parametrize(
    ("name", "address_type", "address"),
    [
        ("button_release_vid", AddressType.VID, b"\xab\xcd"),
        ("nbid_sender", AddressType.NBID, b"\x03"),
        ("energy_leading_zero_uid", AddressType.UID, bytes.fromhex("000B5700009151DC")),
    ],
)
def test_address_types(vectors, name, address_type, address):
    status = parse_unsolicited(_alp(vectors, name)).status
    assert status is not None
    assert status.address_type is address_type
    assert status.address == address


def test_noid_sender_has_empty_address():
    status = parse_unsolicited(_message(address=b"", address_type=AddressType.NOID)).status
    assert status is not None
    assert status.address_type is AddressType.NOID
    assert status.address == b""


def test_flags_and_status_fields_round_trip():
    raw = _message(
        flags=0xF0,
        channel_header=0x47,
        channel_index=0x1234,
        nls_method=5,
        sequence=9,
        target_rx_level=81,
    )
    status = parse_unsolicited(raw).status
    assert status is not None
    assert [status.nls, status.missed, status.retry, status.unicast] == [True] * 4
    assert (status.channel_band, status.channel_class, status.channel_coding) == (4, 1, 3)
    assert status.channel_index == 0x1234
    assert status.nls_method == 5
    assert status.sequence == 9
    assert status.target_rx_level == 81


def test_status_len_zero_means_no_status():
    raw = encode_return_file_data(51, b"\x00\x01\x01") + bytes((0x62, 0xD7, 0x00))
    assert parse_unsolicited(raw).status is None
    assert encode_unsolicited(51, b"\x00\x01\x01", None) == raw


# ------------------------------------------------------------------ length operands


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        ("00", 0),
        ("03", 3),
        ("3F", 63),
        ("40 40", 64),
        ("40 43", 67),
        ("7F FF", 0x3FFF),
        ("80 40 00", 0x4000),
        ("BF FF FF", 0x3FFFFF),
        ("C0 40 00 00", 0x400000),
        ("FF FF FF FF", 0x3FFFFFFF),
        ("41 00", 256),  # a non-minimal encoding is still a valid operand
    ],
)
def test_length_operand_values(encoded, value):
    raw = bytes.fromhex(encoded)
    assert parse_length_operand(raw + b"\xee", 0) == (value, len(raw))


@given(st.integers(min_value=0, max_value=(1 << 30) - 1), st.binary(max_size=3))
def test_length_operand_matches_encoder(value, prefix):
    raw = encode_length_operand(value)
    assert parse_length_operand(prefix + raw, len(prefix)) == (value, len(prefix) + len(raw))


@pytest.mark.parametrize("encoded", ["", "40", "80 01", "C0 00 00"])
def test_truncated_length_operand(encoded):
    with pytest.raises(AlpError, match="truncated length"):
        parse_length_operand(bytes.fromhex(encoded), 0)


def test_two_byte_length_and_offset_operands():
    data = bytes(range(100))
    raw = encode_return_file_data(52, data, offset=300) + encode_status_action(D7Status(UID))
    message = parse_unsolicited(raw)
    assert (message.offset, message.data) == (300, data)


def test_huge_declared_length_is_truncation_not_a_read_past_the_end():
    raw = bytes((0x20, 0x34, 0x00, 0xFF, 0xFF, 0xFF, 0xFF)) + b"\x00" * 10
    with pytest.raises(AlpError) as info:
        parse_unsolicited(raw)
    assert info.value.reason == "truncated file data"
    assert "1073741823 bytes declared" in str(info.value)


# ------------------------------------------------------------------ malformed input


def test_every_prefix_of_every_vector_is_rejected(vectors):
    for case in vectors:
        if not case.get("alp_hex"):
            continue
        raw = bytes.fromhex(case["alp_hex"])
        parse_unsolicited(raw)
        for cut in range(len(raw)):
            with pytest.raises(AlpError):
                parse_unsolicited(raw[:cut])


@given(st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(tail):
    raw = _message()
    with pytest.raises(AlpError) as info:
        parse_unsolicited(raw + tail)
    assert info.value.reason == "trailing bytes after interface status"


@pytest.mark.parametrize(
    ("raw_hex", "reason"),
    [
        ("", "empty command"),
        ("23 05", "unsupported ALP action opcode 35"),
        ("B4 01", "unsupported ALP action opcode 52"),
        ("20", "truncated file id"),
        ("20 33", "truncated file offset"),
        ("20 33 00", "truncated file length"),
        ("20 33 00 03 00 01", "truncated file data"),
        ("20 33 00 03 00 01 01", "missing interface status"),
        ("20 33 00 03 00 01 01 A3 05", "unsupported ALP action opcode 35"),
        ("20 33 00 03 00 01 01 22 00", "unsupported status operand extension 0"),
        ("20 33 00 03 00 01 01 A2 D7 00", "unsupported status operand extension 2"),
        ("20 33 00 03 00 01 01 62", "truncated interface status"),
        ("20 33 00 03 00 01 01 62 00 00", "unsupported interface 0x00"),
        ("20 33 00 03 00 01 01 62 D7 14 32 00", "truncated interface status"),
        ("20 33 00 03 00 01 01 62 D7 02 32 00", "interface status too short"),
        # LEN says UID (20) but the addressee control says VID (14 bytes)
        (
            (
                "20 33 00 03 00 01 01 62 D7 14 32 00 00 39 47 50 00 49 00 A9 30 01 "
                "32 36 36 30 00 39 00 4C"
            ),
            "interface status length mismatch",
        ),
        # LEN says VID (14) but the addressee control says UID
        (
            "20 33 00 03 00 01 01 62 D7 0E 32 00 00 39 47 50 00 49 00 A9 20 01 AB CD",
            "interface status length mismatch",
        ),
    ],
)
def test_malformed_commands(raw_hex, reason):
    with pytest.raises(AlpError) as info:
        parse_unsolicited(bytes.fromhex(raw_hex))
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


@given(st.binary(max_size=120))
@example(b"\x20\x34\x00\xff\xff\xff\xff")
@example(b"\x20\x33\x00\x03\x00\x01\x01\x62\xd7\xff")
def test_arbitrary_bytes_raise_only_alp_error(raw):
    try:
        message = parse_unsolicited(raw)
    except AlpError as exc:
        reason = exc.reason
    else:
        # What parses is one whole message: the file bytes, then a status that ends the command.
        assert message.data in raw
        if message.status is None:
            assert raw.endswith(b"\xd7\x00")
        else:
            assert raw.endswith(message.status.address)
        reason = None
    assert reason is None or reason.strip()


@given(
    file_id=st.integers(0, 255),
    data=st.binary(max_size=300),
    offset=st.integers(0, 1 << 20),
    address_type=st.sampled_from(list(AddressType)),
    rx_level=st.integers(0, 255),
    link_budget=st.integers(0, 255),
    address_seed=st.binary(min_size=8, max_size=8),
)
def test_encoder_round_trip(
    file_id, data, offset, address_type, rx_level, link_budget, address_seed
):
    size = {0: 1, 1: 0, 2: 8, 3: 2}[address_type]
    status = D7Status(
        address=address_seed[:size],
        address_type=address_type,
        rx_level=rx_level,
        link_budget=link_budget,
    )
    raw = encode_unsolicited(file_id, data, status, offset)
    message = parse_unsolicited(raw)
    assert (message.file_id, message.offset, message.data) == (file_id, offset, data)
    assert message.status is not None
    assert message.status.address == address_seed[:size]
    assert message.status.address_type == address_type
    assert (message.status.rx_level, message.status.link_budget) == (rx_level, link_budget)
