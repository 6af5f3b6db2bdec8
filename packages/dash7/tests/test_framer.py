"""The framer against the test vectors and against arbitrary splits, garbage and noise."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway_dash7 import (
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    SYNC,
    Frame,
    Framer,
    FramingError,
    FramingEvent,
    MessageType,
    crc16,
    encode_frame,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _frames(events: list[FramingEvent]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def _errors(events: list[FramingEvent], kind: str) -> list[FramingError]:
    return [e for e in events if isinstance(e, FramingError) and e.kind == kind]


def _feed_split(data: bytes, cuts: list[int]) -> tuple[list[FramingEvent], Framer]:
    framer = Framer()
    out: list[FramingEvent] = []
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    for start, end in itertools.pairwise(bounds):
        out += framer.feed(data[start:end])
    return out, framer


@dataclass(frozen=True)
class _Found:
    offset: int
    frame: Frame


def _reference(data: bytes, idle_at_end: bool = False) -> tuple[list[FramingEvent], list[_Found]]:
    """A plain, non-incremental reading of the protocol rules, over the whole stream at once.

    With `idle_at_end`, the line goes quiet after `data`: partial frames are given up in turn.
    """
    events: list[FramingEvent] = []
    found: list[_Found] = []
    pos = skipped = 0
    held: FramingError | None = None  # a crc/truncated error, until its hunt for sync ends

    def end_hunt() -> FramingError:
        if held is None:
            return FramingError("sync", skipped)
        return FramingError(held.kind, held.skipped + skipped, held.counter, held.length)

    while pos < len(data):
        if data[pos : pos + 2] != SYNC:
            if data[pos:] == SYNC[:1]:
                break  # a lone trailing C0 may be the start of the next sync
            skipped += 1
            pos += 1
            continue
        if skipped or held is not None:
            events.append(end_hunt())
            skipped, held = 0, None
        if len(data) - pos < HEADER_SIZE or len(data) - pos < HEADER_SIZE + data[pos + 4]:
            if not idle_at_end:
                break
            header = data[pos : pos + HEADER_SIZE]
            held = FramingError(
                "truncated",
                1,
                counter=header[2] if len(header) > 2 else None,
                length=header[4] if len(header) > 4 else None,
            )
            pos += 1
            continue
        length = data[pos + 4]
        payload = data[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
        if crc16(payload) == int.from_bytes(data[pos + 5 : pos + 7], "big"):
            frame = Frame(data[pos + 2], data[pos + 3], payload)
            events.append(frame)
            found.append(_Found(pos, frame))
            pos += HEADER_SIZE + length
        else:
            held = FramingError("crc", 1, counter=data[pos + 2], length=length)
            pos += 1
    if idle_at_end and held is not None:
        events.append(end_hunt())  # the line went idle: the hunt ends unfinished
    return events, found


# ------------------------------------------------------------------ vectors


def test_every_vector_frame_alone(vectors: list[dict[str, Any]]) -> None:
    for case in vectors:
        if case["name"] == "bad_crc_then_good":
            continue
        raw = _hex(case["frame_hex"])
        events = Framer().feed(raw)
        assert events == [Frame(raw[2], raw[3], raw[HEADER_SIZE:])], case["name"]
        if "alp_hex" in case:
            assert events[0].payload == _hex(case["alp_hex"])  # type: ignore[union-attr]
            assert events[0].message_type == MessageType.ALP_DATA  # type: ignore[union-attr]


def test_bad_crc_then_good_yields_one_frame_and_one_crc_error(
    vectors: list[dict[str, Any]],
) -> None:
    case = next(c for c in vectors if c["name"] == "bad_crc_then_good")
    raw = _hex(case["frame_hex"])
    for cuts in ([], list(range(len(raw)))):
        events, framer = _feed_split(raw, cuts)
        frames = _frames(events)
        assert len(frames) == 1
        assert frames[0].counter == 0x0D
        assert frames[0].message_type == MessageType.ALP_DATA
        assert len(_errors(events, "crc")) == 1
        assert framer.pending_bytes == 0


def test_every_vector_reports_exactly_its_expected_errors(
    vectors: list[dict[str, Any]],
) -> None:
    for case in vectors:
        raw = _hex(case["frame_hex"])
        events, framer = _feed_split(raw, [])
        events += framer.drop_partial()  # then the line goes idle
        kinds = [e.kind for e in events if isinstance(e, FramingError)]
        assert kinds == case["expect"].get("errors", []), case["name"]


def test_the_bytes_an_error_discards_are_counted_in_it() -> None:
    good = encode_frame(9, MessageType.ALP_DATA, b"ok")
    bad = bytearray(encode_frame(8, MessageType.ALP_DATA, b"0123456789"))
    bad[-1] ^= 0xFF
    garbage = b"\x01\x02\xc0\x55"
    events = Framer().feed(bytes(bad) + garbage + good)
    assert events == [
        FramingError("crc", len(bad) + len(garbage), counter=8, length=10),
        Frame(9, MessageType.ALP_DATA, b"ok"),
    ]
    # garbage after a good frame is a sync error of its own
    assert Framer().feed(good + garbage + good)[1] == FramingError("sync", len(garbage))


def test_an_idle_line_ends_an_unfinished_hunt() -> None:
    bad = bytearray(encode_frame(8, MessageType.ALP_DATA, b"0123456789"))
    bad[-1] ^= 0xFF
    framer = Framer()
    assert framer.feed(bytes(bad) + b"\x01\x02") == []  # no sync yet: the hunt goes on
    assert framer.has_partial()
    assert framer.drop_partial() == [FramingError("crc", len(bad) + 2, counter=8, length=10)]
    assert not framer.has_partial()
    assert framer.unreported_skipped_bytes == 0


def test_all_vectors_back_to_back_one_byte_at_a_time(vectors: list[dict[str, Any]]) -> None:
    stream = b"".join(_hex(c["frame_hex"]) for c in vectors)
    whole = Framer().feed(stream)
    framer = Framer()
    bytewise = [e for i in range(len(stream)) for e in framer.feed(stream[i : i + 1])]
    assert bytewise == whole
    # one frame per case, plus the good frame of bad_crc_then_good
    assert len(_frames(whole)) == len(vectors)
    assert len(_errors(whole, "crc")) == 1


def test_frame_after_garbage_inside_bad_frame_claimed_length() -> None:
    good = encode_frame(7, MessageType.ALP_DATA, b"\x20\x33\x00\x03\x00\x01\x01")
    # a header claiming 200 payload bytes, with a good frame right behind it
    bad_header = SYNC + bytes((6, 1, 200, 0x12, 0x34))
    tail = encode_frame(8, MessageType.ALP_DATA, bytes(250))  # enough bytes for the CRC check
    events = Framer().feed(bad_header + good + tail)
    frames = _frames(events)
    assert [f.counter for f in frames] == [7, 8]
    assert len(_errors(events, "crc")) == 1


def test_drop_partial_rescans_buffered_bytes_on_idle_line() -> None:
    good = encode_frame(7, MessageType.ALP_DATA, b"abc")
    framer = Framer()
    assert framer.feed(SYNC + bytes((6, 1, 255, 0, 0)) + good) == []
    assert framer.has_partial()
    events = framer.drop_partial()
    assert isinstance(events[0], FramingError)
    assert events[0].kind == "truncated"
    assert events[0].length == 255
    assert _frames(events) == [Frame(7, 1, b"abc")]
    assert framer.pending_bytes == 0
    assert framer.drop_partial() == []


def test_reset_forgets_a_partial_frame() -> None:
    frame = encode_frame(1, MessageType.ALP_DATA, b"hello")
    framer = Framer()
    assert framer.feed(frame[:5]) == []
    assert framer.reset() == 5
    assert framer.feed(frame) == [Frame(1, 1, b"hello")]


def test_buffer_is_bounded() -> None:
    framer = Framer()
    framer.feed(SYNC + bytes((1, 1, 255, 0, 0)))
    for _ in range(100):
        framer.feed(bytes(50))
        assert framer.pending_bytes < MAX_FRAME_SIZE


# ------------------------------------------------------------------ properties

_payloads = st.binary(max_size=255)
_frame_bytes = st.builds(encode_frame, st.integers(0, 255), st.integers(0, 255), _payloads)


@st.composite
def _corrupted_frame(draw: st.DrawFn) -> bytes:
    """A frame damaged the way line noise damages one: a flipped byte, or cut short."""
    raw = bytearray(draw(_frame_bytes))
    if draw(st.booleans()):
        index = draw(st.integers(2, len(raw) - 1))
        raw[index] ^= draw(st.integers(1, 255))
        return bytes(raw)
    return bytes(raw[: draw(st.integers(0, len(raw) - 1))])


_noise_byte = st.one_of(st.sampled_from([0xC0, 0x00]), st.integers(0, 255))
_garbage = st.one_of(
    st.binary(max_size=40),
    st.lists(_noise_byte, max_size=40).map(bytes),
    _corrupted_frame(),
)
_segment = st.one_of(
    st.tuples(st.just("frame"), _frame_bytes), st.tuples(st.just("garbage"), _garbage)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_segment, max_size=12), st.lists(st.integers(0, 10_000), max_size=30))
def test_embedded_frames_survive_garbage_and_any_split(
    segments: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    data = b""
    embedded: dict[int, Frame] = {}
    for kind, raw in segments:
        if kind == "frame":
            embedded[len(data)] = Frame(raw[2], raw[3], raw[HEADER_SIZE:])
        data += raw

    events, framer = _feed_split(data, cuts)
    # Whatever the split, the framer reads the stream exactly as a whole-stream reading does.
    assert events == _reference(data)[0]
    _assert_accounted(events, framer, len(data))
    # Then the line goes idle: a header whose length was corrupted no longer holds frames back.
    events += framer.end()
    expected_events, found = _reference(data, idle_at_end=True)
    assert events == expected_events
    _assert_accounted(events, framer, len(data))

    accidental = [f for f in found if f.offset not in embedded]
    # Garbage can, with odds of 1 in 65536 per fake header, carry a CRC-valid frame that then
    # swallows a real one; such examples prove nothing about recovery.
    assume(not accidental)
    assert [f.frame for f in found] == list(embedded.values())
    assert _frames(events) == list(embedded.values())


def _assert_accounted(events: list[FramingEvent], framer: Framer, total: int) -> None:
    """Every byte is in a frame, in an error, pending, or in a discarded run not reported yet."""
    accounted = sum(
        HEADER_SIZE + len(e.payload) if isinstance(e, Frame) else e.skipped for e in events
    )
    assert accounted + framer.pending_bytes + framer.unreported_skipped_bytes == total


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    events, framer = _feed_split(data, cuts)
    assert events == _reference(data)[0]
    _assert_accounted(events, framer, len(data))
    assert framer.pending_bytes < MAX_FRAME_SIZE
    events += framer.drop_partial()
    _assert_accounted(events, framer, len(data))
    assert framer.pending_bytes < MAX_FRAME_SIZE


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_three_frames_in_any_chunk_size(chunk: int) -> None:
    frames = [encode_frame(i, MessageType.ALP_DATA, bytes([i]) * i) for i in (1, 2, 3)]
    data = b"".join(frames)
    framer = Framer()
    out = [e for i in range(0, len(data), chunk) for e in framer.feed(data[i : i + chunk])]
    assert out == [Frame(i, 1, bytes([i]) * i) for i in (1, 2, 3)]


def test_frames_know_how_many_bytes_followed_them_in_the_buffer() -> None:
    first = encode_frame(1, MessageType.ALP_DATA, b"\x01\x02\x03")
    second = encode_frame(2, MessageType.ALP_DATA, b"\x04" * 20)
    garbage = b"\x55\x66"
    frames = [e for e in Framer().feed(first + second + garbage) if isinstance(e, Frame)]
    assert [f.trailing for f in frames] == [len(second) + len(garbage), len(garbage)]
