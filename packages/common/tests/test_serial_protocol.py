from __future__ import annotations

import pytest

from gateway_common.serial_protocol import MessageType, crc16, encode_frame


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_encode_matches_vectors(vectors) -> None:
    for case in vectors:
        frame = bytes.fromhex(case["frame_hex"])
        if case["name"] == "bad_crc_then_good":
            continue
        payload = frame[7:]
        assert len(payload) == frame[4], case["name"]
        assert encode_frame(frame[2], frame[3], payload) == frame, case["name"]


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_frame(256, MessageType.ALP_DATA, b"")
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(1, MessageType.ALP_DATA, bytes(256))
