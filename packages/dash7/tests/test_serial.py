"""The serial frame written and read back: the vectors, every frame kind, the payload codecs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_dash7 import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    SYNC,
    Frame,
    Framer,
    MessageType,
    RebootReason,
    crc16,
    encode_frame,
    encode_log_text,
    encode_reboot_reason,
    parse_log_text,
    parse_reboot_reason,
)


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
    with pytest.raises(ValueError, match="uint8"):
        encode_frame(1, 256, b"")
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(1, MessageType.ALP_DATA, bytes(256))


@given(st.integers(0, 255), st.sampled_from(MessageType), st.binary(max_size=MAX_PAYLOAD))
def test_every_frame_kind_round_trips(counter: int, kind: MessageType, payload: bytes) -> None:
    raw = encode_frame(counter, kind, payload)
    assert raw[:2] == SYNC
    assert len(raw) == HEADER_SIZE + len(payload)
    assert int.from_bytes(raw[5:7], "big") == crc16(payload)
    assert Framer().feed(raw) == [Frame(counter, kind, payload)]


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=MAX_PAYLOAD))
def test_frame_encode_is_what_the_framer_found(
    counter: int, message_type: int, payload: bytes
) -> None:
    raw = encode_frame(counter, message_type, payload)
    (frame,) = Framer().feed(raw)
    assert isinstance(frame, Frame)
    assert frame.encode() == raw


@given(st.integers(0, 255))
def test_reboot_reason_round_trips(reason: int) -> None:
    payload = encode_reboot_reason(reason)
    assert payload == bytes((reason,))
    assert parse_reboot_reason(payload) == reason


def test_reboot_reasons_of_the_protocol() -> None:
    assert [int(r) for r in RebootReason] == [0, 1, 2, 3, 254, 255]
    assert parse_reboot_reason(b"") is None  # a REBOOTED frame without its reason byte


@given(st.text(st.characters(max_codepoint=127), max_size=MAX_PAYLOAD))
def test_log_text_round_trips(text: str) -> None:
    assert parse_log_text(encode_log_text(text)) == text


def test_log_text_is_ascii() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_log_text("Énergie")
    assert parse_log_text(b"ok \xff") == "ok \ufffd"
