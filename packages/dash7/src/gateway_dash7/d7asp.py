"""The D7ASP interface configuration of a Forward action (docs/protocol.md section 5.1).

What the host tells the modem about a request it forwards over DASH7: the QoS (response mode),
the dormant timeout (how long the modem holds the request until the addressee shows up) and the
addressee (access class, id type, NLS method, address). The compressed time (3-bit exponent,
5-bit mantissa, 4^exp x mant seconds) is the DASH7 encoding of the dormant timeout; it is written
and read here.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

from gateway_dash7.alp import ADDRESS_SIZE, AddressType, AlpError, checked_addressee

__all__ = [
    "MAX_COMPRESSED_TIME_S",
    "Addressee",
    "InterfaceConfiguration",
    "NlsMethod",
    "ResponseMode",
    "compress_time",
    "decompress_time",
]

_EXPONENTS: Final = 8
_MAX_MANTISSA: Final = 31
MAX_COMPRESSED_TIME_S: Final = (1 << 2 * (_EXPONENTS - 1)) * _MAX_MANTISSA
"""The longest time a compressed time can say: 4^7 x 31 s = 507,904 s (about 5.9 days)."""
_ADDRESS_TYPES: Final = tuple(AddressType)


class ResponseMode(enum.IntEnum):
    """QoS response mode (the QoS byte's bits 2-0)."""

    NO = 0
    ALL = 1
    ANY = 2
    NO_RPT = 4
    ON_ERROR = 5
    PREFERRED = 6


class NlsMethod(enum.IntEnum):
    """Network layer security method (addressee control bits 3-0)."""

    NONE = 0
    AES_CTR = 1
    AES_CBC_MAC_128 = 2
    AES_CBC_MAC_64 = 3
    AES_CBC_MAC_32 = 4
    AES_CCM_128 = 5
    AES_CCM_64 = 6
    AES_CCM_32 = 7


def compress_time(seconds: int) -> int:
    """The compressed time byte of the smallest encodable time >= `seconds`.

    `0x73` (exponent 3, mantissa 19) is 4^3 x 19 = 1,216 s, the smallest encodable time of at
    least 1,200 s. Raises ValueError below 0 or above `MAX_COMPRESSED_TIME_S`.
    """
    if not 0 <= seconds <= MAX_COMPRESSED_TIME_S:
        raise ValueError(
            f"{seconds} s cannot be a compressed time (0 to {MAX_COMPRESSED_TIME_S} s)"
        )
    for exponent in range(_EXPONENTS):
        unit = 1 << 2 * exponent  # 4^exponent
        if seconds <= unit * _MAX_MANTISSA:
            mantissa = -(-seconds // unit)  # rounded up: never shorter than asked
            return (exponent << 5) | mantissa
    raise AssertionError("unreachable: the range was checked")  # pragma: no cover


def decompress_time(value: int) -> int:
    """Seconds of a compressed time byte: 4^(bits 7-5) x (bits 4-0)."""
    if not 0 <= value <= 0xFF:
        raise ValueError(f"compressed time {value} is not a byte")
    return (1 << 2 * (value >> 5)) * (value & _MAX_MANTISSA)


class Addressee(NamedTuple):
    """Whom a request is for: `address` big-endian as on air (8 bytes UID, 2 bytes VID)."""

    address: bytes
    address_type: AddressType = AddressType.UID
    access_class: int = 0x01
    nls_method: int = NlsMethod.AES_CTR

    def encode(self) -> bytes:
        """Addressee control (id type, NLS method), access class, address."""
        address_type = checked_addressee(self.address_type, self.address, self.nls_method)
        if not 0 <= self.access_class <= 0xFF:
            raise ValueError(f"access class {self.access_class} is not a byte")
        control = (address_type << 4) | self.nls_method
        return bytes((control, self.access_class)) + self.address

    @classmethod
    def parse(cls, payload: bytes, pos: int) -> tuple[Addressee, int]:
        """The addressee at `pos`, and the position after it; raises AlpError."""
        if pos + 2 > len(payload):
            raise AlpError("truncated addressee", f"at byte {pos}, {len(payload)} bytes")
        control, access_class = payload[pos], payload[pos + 1]
        if control & 0xC0:
            raise AlpError("malformed addressee", f"control 0x{control:02X} at byte {pos}")
        address_type = _ADDRESS_TYPES[(control >> 4) & 0x03]
        end = pos + 2 + ADDRESS_SIZE[address_type]
        if end > len(payload):
            raise AlpError(
                "truncated addressee", f"a {address_type.name} address ends at byte {end}"
            )
        addressee = cls(payload[pos + 2 : end], address_type, access_class, control & 0x0F)
        return addressee, end


class InterfaceConfiguration(NamedTuple):
    """The D7ASP interface configuration: QoS byte, dormant timeout, addressee."""

    addressee: Addressee
    dormant_timeout: int = 0
    """The compressed time byte (`compress_time`): how long the modem holds the request."""
    response_mode: int = ResponseMode.ANY
    retry_mode: int = 0
    stop_on_error: bool = False
    record: bool = False

    @property
    def dormant_timeout_s(self) -> int:
        return decompress_time(self.dormant_timeout)

    def encode(self) -> bytes:
        if not 0 <= self.response_mode <= 0x07 or not 0 <= self.retry_mode <= 0x07:
            raise ValueError(
                f"response mode {self.response_mode} or retry mode {self.retry_mode} does not "
                "fit in 3 bits"
            )
        if not 0 <= self.dormant_timeout <= 0xFF:
            raise ValueError(f"dormant timeout {self.dormant_timeout} is not a byte")
        qos = (
            (0x80 if self.stop_on_error else 0)
            | (0x40 if self.record else 0)
            | (self.retry_mode << 3)
            | self.response_mode
        )
        return bytes((qos, self.dormant_timeout)) + self.addressee.encode()

    @classmethod
    def parse(cls, payload: bytes, pos: int) -> tuple[InterfaceConfiguration, int]:
        """The configuration at `pos`, and the position after it; raises AlpError."""
        if pos + 2 > len(payload):
            raise AlpError(
                "truncated interface configuration", f"at byte {pos}, {len(payload)} bytes"
            )
        qos, dormant = payload[pos], payload[pos + 1]
        addressee, end = Addressee.parse(payload, pos + 2)
        configuration = cls(
            addressee=addressee,
            dormant_timeout=dormant,
            response_mode=qos & 0x07,
            retry_mode=(qos >> 3) & 0x07,
            stop_on_error=bool(qos & 0x80),
            record=bool(qos & 0x40),
        )
        return configuration, end
