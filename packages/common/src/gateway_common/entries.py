"""The schema of stream entries, encoded and decoded in this one place.

Each entry of `{p}:frames`, `{p}:records`, `{p}:dead` and `{p}:commands` is a msgpack map
carrying a schema version `v`. Decoding rejects an unknown version or a missing field with
`EntryError`, so a consumer can dead-letter what it cannot read instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, get_args

import msgpack

__all__ = [
    "SCHEMA_VERSION",
    "Addressing",
    "CommandEntry",
    "DeadLetter",
    "EntryError",
    "FieldValue",
    "FileKind",
    "FrameEntry",
    "Record",
    "decode_command",
    "decode_dead_letter",
    "decode_frame",
    "decode_record",
    "encode",
]

SCHEMA_VERSION: Final = 1

FileKind = Literal["energy", "energy_config", "button", "button_config"]
FILE_KINDS: Final[frozenset[str]] = frozenset(get_args(FileKind))
FieldValue = int | bool | list[int]


class EntryError(ValueError):
    """A stream entry that cannot be decoded: wrong encoding, version or shape."""


@dataclass(frozen=True, slots=True)
class FrameEntry:
    """One complete, CRC-checked ALP_DATA frame as ingest accepted it."""

    alp: bytes
    """The frame's payload: the raw ALP command."""
    received_at: float
    """Epoch seconds at which the frame's last byte was read from the serial port."""
    counter: int
    """The modem's frame counter (uint8)."""

    def to_map(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "t": "frame",
            "alp": self.alp,
            "rx": self.received_at,
            "cnt": self.counter,
        }


class Addressing(NamedTuple):
    """The sender's addressee in its D7 interface status (protocol.md section 2.3)."""

    address_type: int
    """0 NBID, 1 NOID, 2 UID, 3 VID."""
    access_class: int
    nls_method: int


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded application file, attributed to a device."""

    device_id: str
    kind: FileKind
    fields: dict[str, FieldValue]
    link_budget: int
    rx_level: int
    """Received power as unsigned -dBm (57 means -57 dBm)."""
    received_at: float
    frame_id: str
    """The id of the `{p}:frames` entry this record came from."""
    addressing: Addressing | None = None
    """How the sender addressed the gateway (from its D7 status): what a downlink to it copies.
    Absent from records written before the downlink existed."""

    def to_map(self) -> dict[str, Any]:
        entry = {
            "v": SCHEMA_VERSION,
            "t": "record",
            "dev": self.device_id,
            "kind": self.kind,
            "f": self.fields,
            "lb": self.link_budget,
            "rxl": self.rx_level,
            "rx": self.received_at,
            "fid": self.frame_id,
        }
        if self.addressing is not None:
            entry["adr"] = list(self.addressing)
        return entry


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something a service could not handle, kept with the reason and where it failed."""

    reason: str
    stage: str
    """Which service gave up on it: "decoder" or "publisher"."""
    source_stream: str
    source_id: str
    raw: bytes
    """The entry's bytes: raw ALP for a frame, the encoded record for a record."""
    failed_at: float
    received_at: float | None = None
    attempts: int = 1
    detail: dict[str, Any] = field(default_factory=dict)

    def to_map(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "t": "dead",
            "reason": self.reason,
            "stage": self.stage,
            "src": self.source_stream,
            "sid": self.source_id,
            "raw": self.raw,
            "at": self.failed_at,
            "rx": self.received_at,
            "n": self.attempts,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """A downlink command as a source accepted it (its state lives in `{p}:command:{id}`)."""

    command_id: str
    device_id: str
    interval_s: int
    enabled: bool
    source: str
    """`gatewayctl` or `mqtt`."""
    created_at: float

    def to_map(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "t": "command",
            "id": self.command_id,
            "dev": self.device_id,
            "iv": self.interval_s,
            "en": self.enabled,
            "src": self.source,
            "at": self.created_at,
        }


def encode(entry: FrameEntry | Record | DeadLetter | CommandEntry) -> bytes:
    """Encode an entry to the bytes stored under the stream field `d`."""
    packed: bytes = msgpack.packb(entry.to_map(), use_bin_type=True)
    return packed


def _unpack(data: bytes, expected_type: str) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise EntryError(f"not a msgpack entry: {exc}") from exc
    if not isinstance(obj, dict):
        raise EntryError("entry is not a map")
    if obj.get("v") != SCHEMA_VERSION:
        raise EntryError(f"unsupported schema version {obj.get('v')!r}")
    if obj.get("t") != expected_type:
        raise EntryError(f"expected a {expected_type} entry, got {obj.get('t')!r}")
    return obj


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise EntryError(f"field {key!r} is missing or has the wrong type")
    return value


def decode_frame(data: bytes) -> FrameEntry:
    obj = _unpack(data, "frame")
    return FrameEntry(
        alp=_get(obj, "alp", bytes),
        received_at=float(_get(obj, "rx", (int, float))),
        counter=_get(obj, "cnt", int),
    )


def decode_record(data: bytes) -> Record:
    obj = _unpack(data, "record")
    kind = _get(obj, "kind", str)
    if kind not in FILE_KINDS:
        raise EntryError(f"unknown file kind {kind!r}")
    return Record(
        device_id=_get(obj, "dev", str),
        kind=kind,
        fields=_get(obj, "f", dict),
        link_budget=_get(obj, "lb", int),
        rx_level=_get(obj, "rxl", int),
        received_at=float(_get(obj, "rx", (int, float))),
        frame_id=_get(obj, "fid", str),
        addressing=_addressing(obj.get("adr")),
    )


def _addressing(value: Any) -> Addressing | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != len(Addressing._fields)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise EntryError("field 'adr' has the wrong type")
    return Addressing(*value)


def decode_dead_letter(data: bytes) -> DeadLetter:
    obj = _unpack(data, "dead")
    rx = obj.get("rx")
    return DeadLetter(
        reason=_get(obj, "reason", str),
        stage=_get(obj, "stage", str),
        source_stream=_get(obj, "src", str),
        source_id=_get(obj, "sid", str),
        raw=_get(obj, "raw", bytes),
        failed_at=float(_get(obj, "at", (int, float))),
        received_at=float(rx) if isinstance(rx, int | float) else None,
        attempts=_get(obj, "n", int),
        detail=_get(obj, "detail", dict),
    )


def decode_command(data: bytes) -> CommandEntry:
    obj = _unpack(data, "command")
    return CommandEntry(
        command_id=_get(obj, "id", str),
        device_id=_get(obj, "dev", str),
        interval_s=_get(obj, "iv", int),
        enabled=_get(obj, "en", bool),
        source=_get(obj, "src", str),
        created_at=float(_get(obj, "at", (int, float))),
    )
