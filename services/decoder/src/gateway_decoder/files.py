"""The sensors' application files (docs/protocol.md section 3), all little-endian.

`decode_file` turns a file id and its bytes into the record kind and the record fields named in
the shared contract (gateway_common.entries.Record.fields).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from gateway_common.dash7 import (
    BUTTON_CONFIG_FILE_ID,
    BUTTON_FILE_ID,
    ENERGY_CONFIG_FILE_ID,
    ENERGY_FILE_ID,
)
from gateway_common.entries import FieldValue, FileKind

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BUTTON_CONFIG_FILE_ID",
    "BUTTON_FILE_ID",
    "ENERGY_CONFIG_FILE_ID",
    "ENERGY_FILE_ID",
    "FILE_SIZES",
    "FileError",
    "UnknownFileError",
    "decode_file",
]


_ENERGY: Final = struct.Struct("<3q3q3i3hB")
_ENERGY_CONFIG: Final = struct.Struct("<IB")

Fields = dict[str, FieldValue]


class FileError(ValueError):
    """File bytes that do not match the file's layout. `reason` is short and stable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


class UnknownFileError(FileError):
    """A file id that is not one of the application files."""


def _energy(data: bytes) -> Fields:
    v = _ENERGY.unpack(data)
    return {
        "apparent_energy_vah": [v[0], v[1], v[2]],
        "active_energy_wh": [v[3], v[4], v[5]],
        "current_ma": [v[6], v[7], v[8]],
        "voltage_v": [v[9], v[10], v[11]],
        "measurement_valid": v[12] != 0,
    }


def _energy_config(data: bytes) -> Fields:
    interval_s, enabled = _ENERGY_CONFIG.unpack(data)
    return {"interval_s": interval_s, "enabled": enabled != 0}


def _button(data: bytes) -> Fields:
    return {"button_id": data[0], "mask": data[1], "buttons_state": data[2]}


def _button_config(data: bytes) -> Fields:
    return {
        "transmit_mask_0": data[0],
        "transmit_mask_1": data[1],
        "button_control_menu": data[2],
        "enabled": data[3] != 0,
    }


_FILES: Final[dict[int, tuple[FileKind, str, int, Callable[[bytes], Fields]]]] = {
    ENERGY_FILE_ID: ("energy", "EnergyFile", _ENERGY.size, _energy),
    ENERGY_CONFIG_FILE_ID: (
        "energy_config",
        "EnergyConfigFile",
        _ENERGY_CONFIG.size,
        _energy_config,
    ),
    BUTTON_FILE_ID: ("button", "ButtonFile", 3, _button),
    BUTTON_CONFIG_FILE_ID: ("button_config", "ButtonConfigFile", 4, _button_config),
}

#: Size in bytes of each application file, by file id.
FILE_SIZES: Final = {file_id: spec[2] for file_id, spec in _FILES.items()}


def decode_file(file_id: int, data: bytes) -> tuple[FileKind, Fields]:
    """The record kind and fields of one complete application file."""
    spec = _FILES.get(file_id)
    if spec is None:
        raise UnknownFileError(f"unknown file id {file_id}")
    kind, name, size, parse = spec
    if len(data) != size:
        raise FileError(f"wrong {name} length", f"file {file_id} has {size} bytes, got {len(data)}")
    return kind, parse(data)
