"""The serial port, through pyserial: the only module of the gateway that imports it.

`serial_for_url` accepts a device path (`/dev/ttyACM0`, `/dev/serial/by-id/...`) as well as a
pyserial URL such as `socket://host:port`, which is how a simulator stands in for the modem.

The reader (ingest's loop) opens, reads and closes the port; another thread may `write` to it
meanwhile (the downlink). A write never holds up a read: the line is full duplex, reads and
writes do not share a lock, and a write gives up after its write timeout (`WriteTimeoutError`;
the bytes already out make a truncated frame the modem discards by its CRC). A lock only keeps
a write off a port being closed or reopened.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

import serial

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PortLostError", "SerialLink", "WriteTimeoutError", "check_url"]

_MAX_READ_BYTES = 4096


def _no_flush() -> None:
    """Stands in for pyserial's input flush at open."""


def _keep_input_at_open(port: serial.Serial) -> None:
    """Keep the bytes that arrive while the port opens.

    pyserial discards pending input at the end of `open()` (tcflush on a tty; on `socket://` it
    reads and drops whatever the peer already sent). A peer that starts sending as soon as it is
    connected would lose its first frame to that race. Stale bytes are harmless instead: the
    framer drops anything that is not a CRC-checked frame.
    """
    port.reset_input_buffer = _no_flush  # type: ignore[method-assign]
    port._reset_input_buffer = _no_flush  # type: ignore[attr-defined]  # noqa: SLF001


#: What pyserial raises on a URL it cannot parse: ValueError for an unknown protocol,
#: SerialException, and TypeError / KeyError from its URL handlers' parsers
#: (`socket://host` without a port, `socket://host:abc`).
_BAD_URL_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    serial.SerialException,
)


def check_url(url: str) -> None:
    """Raise ValueError, saying why, if pyserial cannot open `url` whatever the device does.

    A device path is not checked (the modem may be plugged in later); a URL must name a protocol
    pyserial knows, in a form its handler parses. `hwgrep://` is only checked for its protocol:
    its handler looks the device up as it parses, and the device may be plugged in later too.
    """
    if url.startswith("hwgrep://"):
        return
    try:
        port = serial.serial_for_url(url, do_not_open=True)
        parse = getattr(port, "from_url", None)
        if "://" in url and parse is not None:
            parse(url)
    except _BAD_URL_ERRORS as exc:
        detail = str(exc) if isinstance(exc, ValueError | serial.SerialException) else "malformed"
        raise ValueError(f"not a serial port pyserial can open: {detail}") from exc


class PortLostError(Exception):
    """The port could not be opened, or vanished (USB unplugged, socket peer closed)."""


class WriteTimeoutError(Exception):
    """A write did not go out within the write timeout (the line or the peer is stuck)."""


class SerialLink:
    """One serial port, opened and reopened by its owner; reads return promptly."""

    def __init__(
        self,
        url: str,
        baudrate: int,
        read_timeout_s: float,
        clock: Callable[[], float] = time.time,
        write_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self._write_timeout_s = write_timeout_s
        self._write_lock = threading.Lock()
        """Held by a write, and while the port object is replaced (open, close)."""
        self._clock = clock
        self.first_byte_at = 0.0
        """When the last `read` got its first byte; the rest of what it returned arrived between
        then (or earlier, if the kernel had buffered it) and the read's return."""
        self._baudrate = baudrate
        self._read_timeout_s = read_timeout_s
        self._port: serial.Serial | None = None
        self._counts_waiting = True
        """Whether `in_waiting` is an exact byte count (a tty) or only a hint (socket://)."""

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port (8N1, no flow control, exclusive where the OS supports it)."""
        self.close()
        try:
            port = serial.serial_for_url(
                self.url,
                baudrate=self._baudrate,
                timeout=self._read_timeout_s,
                write_timeout=self._write_timeout_s,
                exclusive=True,
                do_not_open=True,
            )
            _keep_input_at_open(port)
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortLostError(str(exc)) from exc
        # Typed as returning Serial, serial_for_url returns other SerialBase subclasses for URLs.
        self._counts_waiting = isinstance(port, serial.Serial)
        with self._write_lock:
            self._port = port

    def read(self) -> bytes:
        """Wait up to the read timeout for one byte, then take whatever else is already there.

        Returns b"" on timeout. Never waits for a full buffer.
        """
        port = self._require_open()
        try:
            first = port.read(1)
            if not first:
                return b""
            self.first_byte_at = self._clock()
            return first + self._drain(port)
        except (serial.SerialException, OSError) as exc:
            raise PortLostError(str(exc) or type(exc).__name__) from exc

    def read_available(self) -> bytes:
        """Take what the OS already holds, without waiting (a last drain before exit)."""
        port = self._require_open()
        try:
            return self._drain(port)
        except (serial.SerialException, OSError) as exc:
            raise PortLostError(str(exc) or type(exc).__name__) from exc

    def _drain(self, port: serial.Serial) -> bytes:
        if not self._counts_waiting:
            # URL handlers (socket://) only tell whether *some* byte waits: read without waiting.
            port.timeout = 0
            try:
                return port.read(_MAX_READ_BYTES)
            finally:
                port.timeout = self._read_timeout_s
        buf = bytearray()
        while len(buf) < _MAX_READ_BYTES:
            waiting = port.in_waiting
            if not waiting:
                break
            chunk = port.read(min(waiting, _MAX_READ_BYTES - len(buf)))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def write(self, data: bytes) -> None:
        """Write all of `data` within the write timeout, from any thread.

        Raises PortLostError (the port is closed or vanished) or WriteTimeoutError.
        """
        with self._write_lock:
            port = self._port
            if port is None:
                raise PortLostError("port is not open")
            try:
                # No flush: tcdrain waits for the UART without a timeout. The kernel has the
                # bytes once write returns.
                port.write(data)
            except serial.SerialTimeoutException as exc:
                raise WriteTimeoutError(str(exc) or "write timeout") from exc
            except (serial.SerialException, OSError) as exc:
                raise PortLostError(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            # A vanished port has nothing left to release: closing it may fail, harmlessly.
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _require_open(self) -> serial.Serial:
        if self._port is None:
            raise PortLostError("port is not open")
        return self._port
