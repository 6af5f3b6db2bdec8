"""The sensors' application files (docs/protocol.md section 3): bytes to typed values and back.

One `struct.Struct` per file, all little-endian. `decode_file` turns a file id and its bytes
into the file's value; each value's `encode` writes the same layout back, so that
`decode_file(value.file_id, value.encode()) == value`. What the services make of the values
(record kinds, field names) is theirs, not the wire's.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BUTTON_CONFIG_FILE_ID",
    "BUTTON_FILE_ID",
    "ENERGY_CONFIG_FILE_ID",
    "ENERGY_FILE_ID",
    "FILE_NAMES",
    "FILE_SIZES",
    "AppFile",
    "ButtonConfigFile",
    "ButtonFile",
    "EnergyConfigFile",
    "EnergyFile",
    "FileError",
    "Phases",
    "UnknownFileError",
    "decode_file",
]

ENERGY_FILE_ID: Final = 52
ENERGY_CONFIG_FILE_ID: Final = 62
BUTTON_FILE_ID: Final = 51
BUTTON_CONFIG_FILE_ID: Final = 61

_ENERGY: Final = struct.Struct("<3q3q3i3hB")
"""int64 apparent energy x3, int64 active energy x3, int32 current x3, int16 voltage x3, uint8
measurement_valid: 67 bytes."""
_ENERGY_CONFIG: Final = struct.Struct("<IB")
"""uint32 interval in seconds, uint8 enabled: 5 bytes."""
_BUTTON: Final = struct.Struct("<BBB")
"""uint8 button_id, mask (edge flag), buttons_state: 3 bytes."""
_BUTTON_CONFIG: Final = struct.Struct("<BBBB")
"""uint8 transmit_mask_0, transmit_mask_1, button_control_menu, enabled: 4 bytes."""

Phases = tuple[int, int, int]
"""Phase 1, 2, 3."""


class FileError(ValueError):
    """File bytes that do not match the file's layout. `reason` is short and stable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


class UnknownFileError(FileError):
    """A file id that is not one of the application files."""


def _pack(layout: struct.Struct, name: str, *values: int) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ValueError(f"cannot encode {name}: {exc}") from exc


class EnergyFile(NamedTuple):
    """EnergyFile (id 52): cumulative energies in VAh / Wh, currents in mA, voltages in V.

    When `measurement_valid` is False the meter could not be read and the other fields hold the
    previous (stale) values.
    """

    apparent_energy_vah: Phases
    active_energy_wh: Phases
    current_ma: Phases
    voltage_v: Phases
    measurement_valid: bool = True

    @property
    def file_id(self) -> int:
        return ENERGY_FILE_ID

    def encode(self) -> bytes:
        return _pack(
            _ENERGY,
            "EnergyFile",
            *self.apparent_energy_vah,
            *self.active_energy_wh,
            *self.current_ma,
            *self.voltage_v,
            int(self.measurement_valid),
        )


class EnergyConfigFile(NamedTuple):
    """EnergyConfigFile (id 62): the reporting interval (little-endian: 600 is `58 02 00 00`)."""

    interval_s: int = 600
    enabled: bool = True

    @property
    def file_id(self) -> int:
        return ENERGY_CONFIG_FILE_ID

    def encode(self) -> bytes:
        return _pack(_ENERGY_CONFIG, "EnergyConfigFile", self.interval_s, int(self.enabled))


class ButtonFile(NamedTuple):
    """ButtonFile (id 51): `buttons_state` bit 0 is button 1, bit 1 button 2, bit 2 button 3."""

    button_id: int
    mask: int
    """The edge flag."""
    buttons_state: int

    @property
    def file_id(self) -> int:
        return BUTTON_FILE_ID

    def encode(self) -> bytes:
        return _pack(_BUTTON, "ButtonFile", self.button_id, self.mask, self.buttons_state)


class ButtonConfigFile(NamedTuple):
    """ButtonConfigFile (id 61)."""

    transmit_mask_0: int
    transmit_mask_1: int
    button_control_menu: int
    enabled: bool

    @property
    def file_id(self) -> int:
        return BUTTON_CONFIG_FILE_ID

    def encode(self) -> bytes:
        return _pack(
            _BUTTON_CONFIG,
            "ButtonConfigFile",
            self.transmit_mask_0,
            self.transmit_mask_1,
            self.button_control_menu,
            int(self.enabled),
        )


AppFile = EnergyFile | EnergyConfigFile | ButtonFile | ButtonConfigFile


def _energy(data: bytes) -> EnergyFile:
    v = _ENERGY.unpack(data)
    return EnergyFile._make((v[0:3], v[3:6], v[6:9], v[9:12], v[12] != 0))  # the decoder's hot path


def _energy_config(data: bytes) -> EnergyConfigFile:
    interval_s, enabled = _ENERGY_CONFIG.unpack(data)
    return EnergyConfigFile(interval_s, enabled != 0)


def _button(data: bytes) -> ButtonFile:
    return ButtonFile._make(_BUTTON.unpack(data))


def _button_config(data: bytes) -> ButtonConfigFile:
    mask_0, mask_1, menu, enabled = _BUTTON_CONFIG.unpack(data)
    return ButtonConfigFile(mask_0, mask_1, menu, enabled != 0)


_FILES: Final[dict[int, tuple[str, struct.Struct, Callable[[bytes], AppFile]]]] = {
    ENERGY_FILE_ID: ("EnergyFile", _ENERGY, _energy),
    ENERGY_CONFIG_FILE_ID: ("EnergyConfigFile", _ENERGY_CONFIG, _energy_config),
    BUTTON_FILE_ID: ("ButtonFile", _BUTTON, _button),
    BUTTON_CONFIG_FILE_ID: ("ButtonConfigFile", _BUTTON_CONFIG, _button_config),
}

FILE_SIZES: Final = {file_id: spec[1].size for file_id, spec in _FILES.items()}
"""Size in bytes of each application file, by file id."""
FILE_NAMES: Final = {file_id: spec[0] for file_id, spec in _FILES.items()}
"""The firmware's name of each application file, by file id."""


def decode_file(file_id: int, data: bytes) -> AppFile:
    """The value of one complete application file; raises FileError (UnknownFileError)."""
    spec = _FILES.get(file_id)
    if spec is None:
        raise UnknownFileError(f"unknown file id {file_id}")
    name, layout, decode = spec
    if len(data) != layout.size:
        raise FileError(
            f"wrong {name} length", f"file {file_id} has {layout.size} bytes, got {len(data)}"
        )
    return decode(data)
