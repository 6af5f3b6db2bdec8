from __future__ import annotations

import os
import select
import socket
import time

import pytest

from gateway_common.lifecycle import StopSignal
from gateway_simulator.modem import Modem
from gateway_simulator.transport import PtyTransport, TcpTransport

#: Bytes a cooked terminal would translate or act upon: CR, LF, XON, XOFF, DEL, ^C.
TERMINAL_BYTES = bytes((0x0D, 0x0A, 0x11, 0x13, 0x7F, 0x03))


def read_exactly(fd: int, size: int, timeout_s: float = 2.0) -> bytes:
    received = b""
    deadline = time.monotonic() + timeout_s
    while len(received) < size:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        received += os.read(fd, size - len(received))
    return received


def test_pty_delivers_bytes_unmangled() -> None:
    transport = PtyTransport()
    try:
        assert transport.url.startswith("/dev/")
        reader = os.open(transport.url, os.O_RDWR | os.O_NOCTTY)
        try:
            frame = Modem().alp_data(TERMINAL_BYTES * 4 + bytes(range(256))[:200])
            assert transport.write(frame)
            assert transport.write(TERMINAL_BYTES)
            expected = frame + TERMINAL_BYTES
            assert read_exactly(reader, len(expected)) == expected
        finally:
            os.close(reader)
    finally:
        transport.close()


def test_pty_survives_a_reader_that_comes_and_goes() -> None:
    transport = PtyTransport()
    try:
        for _ in range(2):
            reader = os.open(transport.url, os.O_RDWR | os.O_NOCTTY)
            assert transport.write(b"\xc0\x00\x0d\x0a")
            assert read_exactly(reader, 4) == b"\xc0\x00\x0d\x0a"
            os.close(reader)
    finally:
        transport.close()


def test_pty_loses_bytes_instead_of_blocking_when_nobody_reads() -> None:
    transport = PtyTransport()
    try:
        started = time.monotonic()
        results = [transport.write(bytes(250)) for _ in range(2000)]  # 500 kB
        assert time.monotonic() - started < 5
        assert results[0] is True
        assert results[-1] is False
    finally:
        transport.close()


@pytest.mark.integration
def test_tcp_delivers_to_one_client_and_loses_frames_without_one() -> None:
    transport = TcpTransport("127.0.0.1", 0)
    try:
        assert transport.url.startswith("socket://127.0.0.1:")
        port = int(transport.url.rpartition(":")[2])
        assert transport.write(b"lost") is False
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            assert transport.wait_for_client(StopSignal())
            frame = Modem().alp_data(TERMINAL_BYTES)
            assert transport.write(frame)
            assert client.recv(100) == frame
        # the client hung up: frames are lost until the next one connects
        deadline = time.monotonic() + 3
        while transport.write(b"x") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert transport.write(b"x") is False
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            assert transport.wait_for_client(StopSignal())
            assert transport.write(b"again")
            assert client.recv(100) == b"again"
    finally:
        transport.close()


@pytest.mark.integration
def test_tcp_second_client_waits_until_the_first_leaves() -> None:
    transport = TcpTransport("127.0.0.1", 0)
    try:
        port = int(transport.url.rpartition(":")[2])
        first = socket.create_connection(("127.0.0.1", port), timeout=2)
        assert transport.wait_for_client(StopSignal())
        second = socket.create_connection(("127.0.0.1", port), timeout=2)
        assert transport.write(b"one")
        assert first.recv(10) == b"one"
        second.settimeout(0.3)
        with pytest.raises(TimeoutError):
            second.recv(10)
        first.close()
        deadline = time.monotonic() + 3
        second.settimeout(0.1)
        received = b""
        while received != b"two" and time.monotonic() < deadline:
            transport.write(b"two")
            try:
                received = second.recv(10)
            except TimeoutError:
                continue
        assert received.startswith(b"two")
        second.close()
    finally:
        transport.close()


def test_wait_for_client_returns_false_when_stopped() -> None:
    transport = TcpTransport("127.0.0.1", 0)
    try:
        stop = StopSignal()
        stop.set("test")
        assert transport.wait_for_client(stop) is False
    finally:
        transport.close()


def _read_within(transport, size: int, timeout_s: float = 2.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout_s
    while len(got) < size and time.monotonic() < deadline:
        got += transport.read_available()
        time.sleep(0.01)
    return got


def test_what_the_host_writes_is_kept_for_the_modem() -> None:
    request = bytes(range(256)) + TERMINAL_BYTES
    transport = PtyTransport()
    try:
        host = os.open(transport.url, os.O_RDWR | os.O_NOCTTY)
        try:
            assert transport.read_available() == b""
            os.write(host, request)
            assert _read_within(transport, len(request)) == request
        finally:
            os.close(host)
    finally:
        transport.close()
    tcp = TcpTransport("127.0.0.1", 0)
    try:
        port = int(tcp.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=2) as host_socket:
            host_socket.sendall(request)
            assert _read_within(tcp, len(request)) == request
    finally:
        tcp.close()
