"""CRC-16/CCITT-FALSE against its check value and a plain bitwise reading of its definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway_dash7 import CRC16_CHECK, crc16


def _bitwise_crc16(data: bytes) -> int:
    """Poly 0x1021, init 0xFFFF, no reflection, xorout 0: one bit at a time."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == CRC16_CHECK == 0x29B1


def test_crc_of_nothing_is_the_init_value() -> None:
    assert crc16(b"") == 0xFFFF


@given(st.binary(max_size=300))
def test_crc_matches_the_definition(data: bytes) -> None:
    assert crc16(data) == _bitwise_crc16(data)
