"""The Sub-IoT serial framing (docs/protocol.md section 1.1): frames written, and read back.

`encode_frame` writes one frame (sync, version, counter, type, length, big-endian CRC of the
payload, payload). The payloads of the frame kinds that are not ALP are written and read here
too: REBOOTED carries the reboot reason, LOGGING ASCII text.

`Framer.feed` takes bytes exactly as the port delivered them (half a frame, three frames, one
byte at a time) and returns, in stream order, the complete CRC-checked frames and the framing
errors. The output does not depend on how the stream was split into reads.

Rules:

- The receiver hunts for the sync pair `C0 00`. Bytes discarded while hunting are reported as one
  `sync` event per contiguous run, emitted when the next sync is found.
- A frame whose CRC fails is a `crc` error; only its sync byte is consumed and the hunt resumes one
  byte after it, so a valid frame that starts anywhere inside the bad frame's claimed length (or
  right after it) is still found. The bytes discarded by that hunt (the rest of the bad frame and
  any garbage up to the next sync) belong to the same error: they are counted in its `skipped`,
  not as a `sync` error of their own (test vector `bad_crc_then_good`: one error, `crc`). The
  event is emitted when that hunt ends: at the next sync, or by `drop_partial` on an idle line.
- A corrupted length byte can make the framer wait for up to 255 payload bytes. Good frames that
  arrive meanwhile are kept in the buffer and found as soon as enough bytes have arrived for the
  CRC check to fail. If the line goes quiet first, the owner of the port calls `drop_partial`
  after an idle timeout: the partial frame is given up as `truncated` (which, like `crc`, takes
  the bytes its hunt discards) and the buffered bytes are rescanned at once.
- The buffer is bounded: between calls it holds at most one partial frame (< 262 bytes).
- When the stream ends (the port is lost or closed), `end` reports whatever is unfinished.

Every byte fed ends up in exactly one place: a frame, the `skipped` count of an event, the
pending partial frame (`pending_bytes`) or the discarded bytes not reported yet
(`unreported_skipped_bytes`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from gateway_dash7.crc import crc16

__all__ = [
    "BITS_PER_BYTE",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "SYNC",
    "ErrorKind",
    "Frame",
    "Framer",
    "FramingError",
    "FramingEvent",
    "MessageType",
    "RebootReason",
    "encode_frame",
    "encode_log_text",
    "encode_reboot_reason",
    "parse_log_text",
    "parse_reboot_reason",
]

SYNC: Final = b"\xc0\x00"
"""Sync byte 0xC0 followed by protocol version 0x00."""
HEADER_SIZE: Final = 7
MAX_PAYLOAD: Final = 255
MAX_FRAME_SIZE: Final = HEADER_SIZE + MAX_PAYLOAD
BITS_PER_BYTE: Final = 10
"""8N1 on the wire: a start bit, 8 data bits, a stop bit."""
_SYNC_BYTE: Final = SYNC[0]


class MessageType(enum.IntEnum):
    ALP_DATA = 1
    PING_REQUEST = 2
    PING_RESPONSE = 3
    LOGGING = 4
    REBOOTED = 5


class RebootReason(enum.IntEnum):
    POWER_ON = 0
    WATCHDOG = 1
    SOFTWARE = 2
    RESET_PIN = 3
    OTHER = 254
    UNKNOWN = 255


def encode_frame(counter: int, message_type: int, payload: bytes) -> bytes:
    """One serial frame: sync, version, counter, type, length, big-endian CRC, payload."""
    if not 0 <= counter <= 0xFF:
        raise ValueError(f"counter {counter} is not a uint8")
    if not 0 <= message_type <= 0xFF:
        raise ValueError(f"message type {message_type} is not a uint8")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    crc = crc16(payload)
    return SYNC + bytes((counter, message_type, len(payload), crc >> 8, crc & 0xFF)) + payload


def encode_reboot_reason(reason: int) -> bytes:
    """The payload of a REBOOTED frame: the reason, one byte (`RebootReason` names the known)."""
    return bytes((reason,))


def parse_reboot_reason(payload: bytes) -> int | None:
    """The reason a REBOOTED frame carries; None when its payload is empty."""
    return payload[0] if payload else None


def encode_log_text(text: str) -> bytes:
    """The payload of a LOGGING frame: ASCII text (anything else raises UnicodeEncodeError)."""
    return text.encode("ascii")


def parse_log_text(payload: bytes) -> str:
    """The text of a LOGGING frame; a byte that is not ASCII reads as U+FFFD."""
    return payload.decode("ascii", errors="replace")


ErrorKind = Literal["crc", "sync", "truncated"]


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame whose payload passed the CRC check."""

    counter: int
    message_type: int
    payload: bytes
    trailing: int = field(default=0, compare=False)
    """Bytes that had already arrived after this frame's last byte when it was found: the owner
    of the port dates the frame that many byte-times before the read that completed it."""

    def encode(self) -> bytes:
        """The frame's bytes on the wire (`encode_frame`)."""
        return encode_frame(self.counter, self.message_type, self.payload)


@dataclass(frozen=True, slots=True)
class FramingError:
    """Bytes the framer had to discard, and why.

    `crc`: a frame whose CRC did not match; `skipped` is its sync byte plus the bytes discarded
    while hunting for the next sync after it (the rest of the frame is rescanned first).
    `sync`: a run of bytes that did not start with `C0 00`, after a good frame or at the start.
    `truncated`: a partial frame given up by `drop_partial`; `skipped` as for `crc`.
    """

    kind: ErrorKind
    skipped: int
    counter: int | None = None
    """The counter byte of the discarded frame header (`crc`, `truncated`), when known."""
    length: int | None = None
    """The payload length the discarded header claimed (`crc`, `truncated`), when known."""


FramingEvent = Frame | FramingError


class Framer:
    """Turns a byte stream into frames and framing errors, whatever the read boundaries."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipped = 0
        """Bytes discarded since the last sync, not yet reported."""
        self._held: FramingError | None = None
        """A `crc` or `truncated` error whose hunt for the next sync is still going on."""

    @property
    def pending_bytes(self) -> int:
        """Bytes held back: a partial frame (or a lone trailing 0xC0) waiting for more."""
        return len(self._buf)

    @property
    def unreported_skipped_bytes(self) -> int:
        """Bytes discarded while hunting for sync, reported once the next sync is found."""
        return self._skipped + (self._held.skipped if self._held is not None else 0)

    def has_partial(self) -> bool:
        """True when a started frame (sync seen) waits for more bytes, or an error's hunt for
        the next sync is unfinished: `drop_partial` gives either up once the line is idle."""
        return len(self._buf) >= len(SYNC) or self._held is not None

    def feed(self, data: bytes) -> list[FramingEvent]:
        """Add bytes as they were read; return the frames and errors they completed, in order."""
        self._buf += data
        return self._parse(0)

    def drop_partial(self) -> list[FramingEvent]:
        """The line went idle: report an error whose hunt is unfinished, give up the partial
        frame and rescan the bytes behind its sync."""
        out: list[FramingEvent] = [self._end_hunt()] if self._held is not None else []
        buf = self._buf
        if len(buf) < len(SYNC):
            return out
        self._held = FramingError(
            "truncated",
            1,
            counter=buf[2] if len(buf) > 2 else None,
            length=buf[4] if len(buf) > 4 else None,
        )
        return [*out, *self._parse(1)]

    def end(self) -> list[FramingEvent]:
        """The stream ended (the port is lost or closed): give up everything unfinished and
        report it; a whole frame among the bytes behind a given-up sync is still found."""
        out: list[FramingEvent] = []
        while self.has_partial():  # each turn reports a held error or consumes a sync byte
            out += self.drop_partial()
        return out

    def reset(self) -> int:
        """Forget everything (the port was reopened); return the number of bytes dropped."""
        dropped = len(self._buf) + self.unreported_skipped_bytes
        self._buf.clear()
        self._skipped = 0
        self._held = None
        return dropped

    def _end_hunt(self) -> FramingError:
        """The event for the bytes discarded since the last sync (caller: there are some)."""
        held, self._held = self._held, None
        skipped, self._skipped = self._skipped, 0
        if held is not None:
            return replace(held, skipped=held.skipped + skipped)
        return FramingError("sync", skipped)

    def _parse(self, pos: int) -> list[FramingEvent]:
        buf = self._buf
        out: list[FramingEvent] = []
        end = len(buf)
        while True:
            idx = buf.find(SYNC, pos)
            if idx < 0:
                # No sync: keep only a trailing 0xC0, which may start the next sync pair.
                keep = 1 if end > pos and buf[end - 1] == _SYNC_BYTE else 0
                self._skipped += end - pos - keep
                pos = end - keep
                break
            if idx > pos:
                self._skipped += idx - pos
                pos = idx
            if self._skipped or self._held is not None:
                out.append(self._end_hunt())
            if end - pos < HEADER_SIZE:
                break
            length = buf[pos + 4]
            frame_end = pos + HEADER_SIZE + length
            if frame_end > end:
                break
            payload = bytes(buf[pos + HEADER_SIZE : frame_end])
            expected = (buf[pos + 5] << 8) | buf[pos + 6]
            if crc16(payload) == expected:
                out.append(
                    Frame(
                        counter=buf[pos + 2],
                        message_type=buf[pos + 3],
                        payload=payload,
                        trailing=end - frame_end,
                    )
                )
                pos = frame_end
            else:
                self._held = FramingError("crc", 1, counter=buf[pos + 2], length=length)
                pos += 1
        del buf[:pos]
        return out
