"""The test proxy against a real TCP echo server on loopback: it forwards and counts, goes
silent without closing anything, blackholes the connections it has while new ones work, and
delays each chunk (latency, not a bandwidth cap)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from gateway_devkit.polling import wait_until
from gateway_devkit.tcp_proxy import Mode, TcpProxy

WAIT_S = 5.0
QUIET_S = 0.5
"""How long "nothing arrives" is watched for."""


@dataclass
class EchoServer:
    """Echoes every byte back; remembers which of its connections the client closed."""

    listener: socket.socket
    closed: list[int] = field(default_factory=list)
    accepted: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._echo, args=(conn, self.accepted), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket, number: int) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass
            self.closed.append(number)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer(socket.create_server(("127.0.0.1", 0)))
    threading.Thread(target=server.serve, daemon=True).start()
    yield server
    server.listener.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as p:
        yield p


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=WAIT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive(sock: socket.socket, size: int, timeout_s: float = WAIT_S) -> bytes:
    """`size` bytes, or fewer if they did not come within `timeout_s` (b"" at the end)."""
    sock.settimeout(timeout_s)
    got = bytearray()
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(TimeoutError):
        while len(got) < size:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(size - len(got))
            if not data:
                break
            got += data
    return bytes(got)


def still_open(sock: socket.socket) -> bool:
    """Nothing to read and no end of stream within QUIET_S."""
    sock.settimeout(QUIET_S)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False  # bytes, or the end of the stream


def test_it_forwards_both_ways_and_counts_the_bytes(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert receive(sock, 5) == b"hello"
        sock.sendall(b"x" * 200_000)
        assert receive(sock, 200_000) == b"x" * 200_000
    assert wait_until(lambda: proxy.bytes_down == 200_005, WAIT_S)
    assert proxy.bytes_up == 200_005
    (info,) = proxy.connections()
    assert (info.bytes_up, info.bytes_down, info.discarded) == (200_005, 200_005, 0)
    assert info.last_down_at is not None


def test_a_closed_client_closes_the_target_side(proxy: TcpProxy, echo: EchoServer) -> None:
    sock = connect(proxy)
    sock.sendall(b"a")
    assert receive(sock, 1) == b"a"
    sock.close()
    assert wait_until(lambda: echo.closed == [1], WAIT_S)
    assert wait_until(lambda: proxy.connections()[0].mode is Mode.CLOSED, WAIT_S)
    assert proxy.connections()[0].client_closed_at is not None


def test_silence_forwards_nothing_closes_nothing_and_resume_delivers_in_order(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    before = connect(proxy)
    before.sendall(b"1")
    assert receive(before, 1) == b"1"

    proxy.silence()
    before.sendall(b"234")
    during = connect(proxy)  # accepted, then silent too
    during.sendall(b"ab")
    assert receive(before, 1, QUIET_S) == b""
    assert receive(during, 1, QUIET_S) == b""
    assert still_open(before)
    assert still_open(during)
    assert echo.closed == []
    assert proxy.bytes_up == 1  # only "1" reached the echo server

    proxy.resume()
    assert receive(before, 3) == b"234"
    assert receive(during, 2) == b"ab"
    before.sendall(b"5")
    assert receive(before, 1) == b"5"
    before.close()
    during.close()


def test_a_blackholed_connection_stays_dead_and_new_ones_work(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    old = connect(proxy)
    old.sendall(b"1")
    assert receive(old, 1) == b"1"

    proxy.blackhole_existing()
    old.sendall(b"lost")
    assert receive(old, 1, QUIET_S) == b""
    proxy.resume()  # a NAT's lost state does not come back
    assert receive(old, 1, QUIET_S) == b""

    new = connect(proxy)
    new.sendall(b"fine")
    assert receive(new, 4) == b"fine"

    # The client gives up on the dead connection: the target is not told.
    old.close()
    assert wait_until(lambda: proxy.connections()[0].client_closed_at is not None, WAIT_S)
    time.sleep(QUIET_S)
    assert echo.closed == []
    dead, alive = proxy.connections()
    assert dead.mode is Mode.DEAD
    assert dead.discarded == 4
    assert (dead.bytes_up, dead.bytes_down) == (1, 1)
    assert alive.mode is Mode.FORWARD
    new.close()
    assert wait_until(lambda: echo.closed == [2], WAIT_S)


def test_a_delay_is_latency_per_chunk_in_order_not_a_bandwidth_cap(proxy: TcpProxy) -> None:
    delay_s, chunks, spacing_s = 0.4, 6, 0.1
    with connect(proxy) as sock:
        sock.sendall(b"0")
        assert receive(sock, 1) == b"0"
        proxy.delay_downstream(delay_s)
        sent_at, arrived_at = [], []
        got = bytearray()
        for i in range(chunks):
            sent_at.append(time.monotonic())
            sock.sendall(bytes([0x41 + i]))
            time.sleep(spacing_s)
        while len(got) < chunks:
            data = receive(sock, 1)
            assert data, f"only {bytes(got)!r} arrived"
            got += data
            arrived_at.append(time.monotonic())
        assert bytes(got) == b"ABCDEF"
        lags = [a - s for s, a in zip(sent_at, arrived_at, strict=True)]
        # Each chunk is late by the delay (the reader of this test only sees it after its own
        # sleeps, hence the spacing in the upper margin), and the delays do not add up.
        assert all(delay_s - 0.02 <= lag <= delay_s + spacing_s + 0.3 for lag in lags), lags
        assert arrived_at[-1] - sent_at[0] < chunks * delay_s

        proxy.delay_downstream(0)
        started = time.monotonic()
        sock.sendall(b"now")
        assert receive(sock, 3) == b"now"
        assert time.monotonic() - started < delay_s


def test_an_upstream_delay_holds_what_the_client_sends(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        proxy.delay_upstream(0.3)
        started = time.monotonic()
        sock.sendall(b"up")
        assert receive(sock, 2) == b"up"
        assert time.monotonic() - started >= 0.29


def test_close_ends_every_connection(echo: EchoServer) -> None:
    proxy = TcpProxy("127.0.0.1", echo.port).start()
    sock = connect(proxy)
    sock.sendall(b"z")
    assert receive(sock, 1) == b"z"
    proxy.close()
    assert receive(sock, 1) == b""  # end of stream
    sock.close()
    assert wait_until(lambda: echo.closed == [1], WAIT_S)


def test_a_target_that_is_down_refuses_the_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        port = spare.getsockname()[1]
    with TcpProxy("127.0.0.1", port) as proxy, connect(proxy) as sock:
        assert receive(sock, 1) == b""
        assert wait_until(lambda: proxy.refused == 1, WAIT_S)
