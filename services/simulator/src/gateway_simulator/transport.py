"""Where the simulated modem's bytes go: a pseudo-terminal or a TCP port.

Both behave like a real UART: bytes nobody can take are lost, never queued without bound, and
the modem never waits for the host. What the host writes (downlink requests) is kept, up to
`INBOX_BYTES`, until the modem reads it (`read_available`).

- `PtyTransport`: the slave side is put in raw mode so the line discipline never translates or
  swallows bytes (CR, LF, XON/XOFF, DEL, ^C are payload here); the slave stays open so the
  terminal survives readers that come and go. When the pty buffer is full, the rest is lost.
- `TcpTransport`: one client at a time (the next waits in the backlog, as a second process
  cannot open a held serial port); while no client is connected, frames are lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import tty
from typing import TYPE_CHECKING, Protocol

from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from gateway_common.lifecycle import StopSignal

__all__ = ["PtyTransport", "TcpTransport", "Transport"]

log = get_logger(__name__)

#: How long a blocked TCP send may take before the frame is given up as lost.
SEND_TIMEOUT_S = 2.0
#: Blocking waits in the accept thread wake up this often to notice `close()`.
POLL_S = 0.5
#: What the host wrote and the modem has not read yet, at most (beyond it, the oldest goes).
INBOX_BYTES = 65536


class Transport(Protocol):
    @property
    def url(self) -> str:
        """What a host opens to read the modem: a device path or a pyserial URL."""
        ...

    def write(self, data: bytes) -> bool:
        """Send `data`; False when it (or part of it) was lost."""
        ...

    def read_available(self) -> bytes:
        """What the host wrote since the last call (never waits)."""
        ...

    def close(self) -> None: ...


class PtyTransport:
    """A pseudo-terminal pair; the host opens `url` (the slave path) as its serial port."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._path = os.ttyname(self._slave)

    @property
    def url(self) -> str:
        return self._path

    def write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                log.warning("pty_buffer_full", lost_bytes=len(view))
                return False
            view = view[written:]
        return True

    def read_available(self) -> bytes:
        data = bytearray()
        while len(data) < INBOX_BYTES:
            try:
                chunk = os.read(self._master, 4096)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpTransport:
    """A TCP server standing in for the serial port (`socket://host:port` for pyserial)."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.create_server((host, port), family=family, backlog=1)
        self._server.settimeout(POLL_S)
        bound_host, bound_port = self._server.getsockname()[:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"socket://{shown_host}:{bound_port}"
        self._lock = threading.Lock()
        self._client: socket.socket | None = None
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._inbox = bytearray()
        self._thread = threading.Thread(target=self._serve, name="tcp-accept", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return self._url

    def wait_for_client(self, stop: StopSignal) -> bool:
        """Block until a client is connected or `stop` is set; True when connected."""
        while not stop.is_set():
            if self._connected.wait(POLL_S):
                return True
        return False

    def write(self, data: bytes) -> bool:
        with self._lock:
            client = self._client
        if client is None:
            return False
        try:
            client.sendall(data)
        except OSError as exc:
            log.info("client_write_failed", error=exc.__class__.__name__)
            self._drop(client)
            return False
        return True

    def read_available(self) -> bytes:
        with self._lock:
            data, self._inbox = bytes(self._inbox), bytearray()
        return data

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            client = self._client
        if client is not None:
            self._drop(client)
        self._thread.join(timeout=2 * POLL_S + SEND_TIMEOUT_S)
        self._server.close()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                client, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(SEND_TIMEOUT_S)
            with self._lock:
                self._client = client
            self._connected.set()
            log.info("client_connected", peer="{}:{}".format(*peer[:2]))
            self._drain_until_gone(client)
            self._drop(client)
            log.info("client_disconnected", peer="{}:{}".format(*peer[:2]))

    def _drain_until_gone(self, client: socket.socket) -> None:
        """Keep what the host sends (its requests) until it hangs up."""
        while not self._closing.is_set():
            try:
                chunk = client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._inbox += chunk
                del self._inbox[: max(0, len(self._inbox) - INBOX_BYTES)]

    def _drop(self, client: socket.socket) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
                self._connected.clear()
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv()
        client.close()
