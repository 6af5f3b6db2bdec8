"""SerialLink reads promptly and turns every way a port can vanish into PortLostError."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gateway_ingest.serial_link import PortLostError, SerialLink

pytestmark = pytest.mark.integration  # loopback TCP and ptys

READ_TIMEOUT_S = 2.0


@pytest.fixture
def peer() -> Iterator[tuple[SerialLink, socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    link = SerialLink(f"socket://127.0.0.1:{listener.getsockname()[1]}", 115200, READ_TIMEOUT_S)
    opener = threading.Thread(target=link.open)
    opener.start()
    conn, _ = listener.accept()
    opener.join()
    listener.close()
    yield link, conn
    link.close()
    conn.close()


def test_small_read_returns_without_waiting_for_the_timeout(
    peer: tuple[SerialLink, socket.socket],
) -> None:
    link, conn = peer
    conn.sendall(b"0123456789")
    started = time.monotonic()
    data = link.read()
    while len(data) < 10:
        data += link.read()
    assert data == b"0123456789"
    assert time.monotonic() - started < READ_TIMEOUT_S / 2


def test_burst_is_read_in_large_chunks(peer: tuple[SerialLink, socket.socket]) -> None:
    link, conn = peer
    payload = os.urandom(200_000)
    threading.Thread(target=conn.sendall, args=(payload,)).start()
    data, reads = b"", 0
    while len(data) < len(payload):
        data += link.read()
        reads += 1
    assert data == payload
    assert reads < len(payload) / 100


def test_peer_closing_is_port_lost(peer: tuple[SerialLink, socket.socket]) -> None:
    link, conn = peer
    conn.close()
    with pytest.raises(PortLostError):
        link.read()


def test_open_refused_is_port_lost() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = SerialLink(f"socket://127.0.0.1:{port}", 115200, 0.1)
    with pytest.raises(PortLostError):
        link.open()
    assert not link.is_open


def test_missing_device_is_port_lost(tmp_path) -> None:
    with pytest.raises(PortLostError):
        SerialLink(str(tmp_path / "ttyACM9"), 115200, 0.1).open()


def test_pty_read_and_hangup(modem_line) -> None:
    link = SerialLink(modem_line.path, 115200, READ_TIMEOUT_S)
    link.open()
    try:
        modem_line.write(b"\xc0\x00\x0d\x0a\x11\x13\x03")
        data = link.read()
        while len(data) < 7:
            data += link.read()
        assert data == b"\xc0\x00\x0d\x0a\x11\x13\x03"
        assert link.read_available() == b""
    finally:
        modem_line.hang_up()
    try:
        with pytest.raises(PortLostError):
            link.read()
    finally:
        link.close()
