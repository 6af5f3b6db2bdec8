from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.entries import (
    DeadLetter,
    EntryError,
    FrameEntry,
    Record,
    decode_dead_letter,
    decode_frame,
    decode_record,
    encode,
)


@given(alp=st.binary(max_size=255), rx=st.floats(0, 4e9), counter=st.integers(0, 255))
def test_frame_round_trip(alp: bytes, rx: float, counter: int) -> None:
    entry = FrameEntry(alp=alp, received_at=rx, counter=counter)
    assert decode_frame(encode(entry)) == entry


def test_record_round_trip() -> None:
    record = Record(
        device_id="B5700009151DC",
        kind="energy",
        fields={"active_energy_wh": [1, 2, 3], "measurement_valid": True},
        link_budget=71,
        rx_level=57,
        received_at=1764250000.125,
        frame_id="1-0",
    )
    assert decode_record(encode(record)) == record


def test_dead_letter_round_trip() -> None:
    dead = DeadLetter(
        reason="unknown file id 64",
        stage="decoder",
        source_stream="gw:frames",
        source_id="1-0",
        raw=b"\x20\x40",
        failed_at=2.0,
        received_at=1.0,
        attempts=1,
        detail={"offset": 1},
    )
    assert decode_dead_letter(encode(dead)) == dead


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 99, "t": "frame"}),
        msgpack.packb({"v": 1, "t": "record"}),
        msgpack.packb({"v": 1, "t": "frame", "alp": "text", "rx": 1.0, "cnt": 1}),
    ],
)
def test_bad_frame_entries_raise_entry_error(data: bytes) -> None:
    with pytest.raises(EntryError):
        decode_frame(data)


def test_record_with_unknown_kind_is_rejected() -> None:
    data = msgpack.packb(
        {
            "v": 1,
            "t": "record",
            "dev": "A",
            "kind": "x",
            "f": {},
            "lb": 1,
            "rxl": 1,
            "rx": 1.0,
            "fid": "1-0",
        }
    )
    with pytest.raises(EntryError, match="unknown file kind"):
        decode_record(data)
