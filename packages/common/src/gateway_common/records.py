"""A frame entry in, a Record or the reason it cannot be one out. Pure: no I/O, no clock.

The contract's Record is built here from the codec's values (gateway_dash7): the record kind and
field names of each application file are the services' contract, not the wire's. The decoder
runs this on every frame and `gatewayctl replay` on archived ones, so a replayed frame becomes
exactly the record the decoder made of it.

Reasons are short and stable (they label metrics and are what an operator greps for); the
specifics go into `Rejection.detail`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gateway_common.entries import (
    Addressing,
    EntryError,
    FieldValue,
    FileKind,
    Record,
    decode_frame,
)
from gateway_common.streams import ENTRY_FIELD
from gateway_dash7 import (
    AddressType,
    AlpError,
    AppFile,
    ButtonConfigFile,
    ButtonFile,
    EnergyConfigFile,
    EnergyFile,
    FileError,
    UnknownFileError,
    UnsolicitedMessage,
    decode_file,
    device_id,
    parse_unsolicited,
)

__all__ = ["DecodeFunction", "Outcome", "Rejection", "decode_alp", "decode_entry", "record_fields"]


class Rejection(NamedTuple):
    """Why a frame cannot become a record; the decoder turns it into a DeadLetter."""

    reason: str
    raw: bytes
    """The ALP bytes (or the entry's bytes when it could not even be unpacked)."""
    received_at: float | None
    detail: dict[str, Any]


Outcome = Record | Rejection
DecodeFunction = Callable[[str, Mapping[bytes, bytes]], Outcome]
"""(frame entry id, the entry's fields) -> Outcome; the decoder loop takes one of these."""


def record_fields(file: AppFile) -> tuple[FileKind, dict[str, FieldValue]]:
    """The record kind and the record fields (gateway_common.entries.Record) of one file."""
    match file:
        case EnergyFile():
            return "energy", {
                "apparent_energy_vah": list(file.apparent_energy_vah),
                "active_energy_wh": list(file.active_energy_wh),
                "current_ma": list(file.current_ma),
                "voltage_v": list(file.voltage_v),
                "measurement_valid": file.measurement_valid,
            }
        case ButtonFile():
            return "button", {
                "button_id": file.button_id,
                "mask": file.mask,
                "buttons_state": file.buttons_state,
            }
        case EnergyConfigFile():
            return "energy_config", {"interval_s": file.interval_s, "enabled": file.enabled}
        case ButtonConfigFile():
            return "button_config", {
                "transmit_mask_0": file.transmit_mask_0,
                "transmit_mask_1": file.transmit_mask_1,
                "button_control_menu": file.button_control_menu,
                "enabled": file.enabled,
            }


def decode_entry(entry_id: str, fields: Mapping[bytes, bytes]) -> Outcome:
    """Decode one `{p}:frames` entry (its stream fields) into a Record or a Rejection."""
    data = fields.get(ENTRY_FIELD)
    if data is None:
        present = sorted(key.decode("utf-8", "replace") for key in fields)
        return Rejection("undecodable entry: missing field d", b"", None, {"fields": present})
    try:
        frame = decode_frame(data)
    except EntryError as exc:
        message = str(exc)
        return Rejection(
            "undecodable entry: " + message.split(":", 1)[0], data, None, {"error": message}
        )
    outcome = decode_alp(entry_id, frame.alp, frame.received_at)
    if isinstance(outcome, Rejection):
        # The modem's frame counter, so that `gatewayctl dead requeue` rebuilds the whole entry.
        return outcome._replace(detail={**outcome.detail, "counter": frame.counter})
    return outcome


def decode_alp(entry_id: str, alp: bytes, received_at: float) -> Outcome:
    """Decode the ALP command of one frame received at `received_at` (epoch seconds)."""
    try:
        message = parse_unsolicited(alp)
    except AlpError as exc:
        return Rejection("malformed ALP: " + exc.reason, alp, received_at, {"error": str(exc)})
    status = message.status
    if status is None or status.address_type in (AddressType.NBID, AddressType.NOID):
        return _unattributable(message, alp, received_at)
    if message.offset != 0:
        return Rejection(
            "partial file data",
            alp,
            received_at,
            {"file_id": message.file_id, "offset": message.offset, "length": len(message.data)},
        )
    try:
        kind, fields = record_fields(decode_file(message.file_id, message.data))
    except UnknownFileError as exc:
        return Rejection(exc.reason, alp, received_at, {"length": len(message.data)})
    except FileError as exc:
        return Rejection(exc.reason, alp, received_at, {"error": str(exc)})
    return Record(
        device_id=device_id(status.address),
        kind=kind,
        fields=fields,
        link_budget=status.link_budget,
        rx_level=status.rx_level,
        received_at=received_at,
        frame_id=entry_id,
        addressing=Addressing(status.address_type, status.access_class, status.nls_method),
    )


def _unattributable(message: UnsolicitedMessage, alp: bytes, received_at: float) -> Rejection:
    """NBID/NOID senders (and a missing status) name no device: the frame cannot be published."""
    status = message.status
    if status is None:
        return Rejection(
            "unattributable sender (no status)", alp, received_at, {"file_id": message.file_id}
        )
    return Rejection(
        f"unattributable sender ({status.address_type.name})",
        alp,
        received_at,
        {"file_id": message.file_id, "address": status.address.hex()},
    )
