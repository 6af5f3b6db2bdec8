"""A TCP proxy for the fault tests: a loopback port that forwards to a target, and can make the
network between them go silent, lose the connections it carries, or slow down.

- `silence()`: nothing is forwarded any more, in either direction, on the connections open now
  and on those accepted meanwhile, and nothing is closed: a link down without a word (a cable,
  a 4G router that stopped forwarding). What each side sends waits in the kernel's buffers;
  `resume()` forwards it, as TCP retransmits once the network is back.
- `blackhole_existing()`: the connections open now are dead for good, new ones work: a NAT or
  a 4G router that dropped its state. What either side of a dead connection sends is read and
  thrown away, and neither side is closed, nor told when the other closes.
- `delay_downstream(s)` / `delay_upstream(s)`: each chunk read from the target (the client) is
  written to the client (the target) `s` seconds after it arrived, in order: latency, not a
  bandwidth cap.

Bytes are counted each way, per connection and in total. One thread serves every socket
(selectors); the methods may be called from any thread.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Self, cast

from gateway_devkit.servers import LOOPBACK

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["ConnectionInfo", "Mode", "TcpProxy"]

_CHUNK = 65536
#: Bytes read from one side and not yet written to the other beyond which that side is not read
#: (the kernel's buffers then push back on the sender, as a slow network would).
_MAX_HELD = 4 * 1024 * 1024
_CONNECT_TIMEOUT_S = 2.0
_JOIN_TIMEOUT_S = 5.0


class Mode(Enum):
    FORWARD = "forward"
    SILENT = "silent"
    """Nothing read, nothing written; nothing closed either."""
    DEAD = "dead"
    """Everything read is thrown away; a side that closes is not told to the other."""
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionInfo:
    """One connection through the proxy, as the proxy saw it (times are time.monotonic())."""

    number: int
    mode: Mode
    accepted_at: float
    bytes_up: int
    """Bytes from the client written to the target."""
    bytes_down: int
    """Bytes from the target written to the client."""
    discarded: int
    """Bytes read from either side and never written (a dead connection, or cut short)."""
    last_up_at: float | None
    last_down_at: float | None
    """When bytes were last written to the client: what the client last received."""
    client_closed_at: float | None
    """When the proxy saw the client close (an end of stream or an error on its socket)."""
    target_closed_at: float | None


@dataclass
class _Flow:
    """One direction of a connection."""

    src: socket.socket
    dst: socket.socket
    delay_s: float = 0.0
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    """Chunks read and not yet due: (due time, bytes), in order."""
    out: bytearray = field(default_factory=bytearray)
    """Bytes due and not yet written."""
    last_due: float = 0.0
    ended: bool = False
    """The source sent its end of stream (or failed)."""
    delivered: int = 0
    discarded: int = 0
    last_delivered_at: float | None = None

    def held(self) -> int:
        return len(self.out) + sum(len(chunk) for _, chunk in self.queue)

    def drop_held(self) -> None:
        self.discarded += self.held()
        self.queue.clear()
        self.out.clear()


@dataclass
class _Connection:
    number: int
    client: socket.socket
    target: socket.socket
    mode: Mode
    accepted_at: float
    up: _Flow
    down: _Flow
    client_closed_at: float | None = None
    target_closed_at: float | None = None
    open_sockets: set[socket.socket] = field(default_factory=set)

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            number=self.number,
            mode=self.mode,
            accepted_at=self.accepted_at,
            bytes_up=self.up.delivered,
            bytes_down=self.down.delivered,
            discarded=self.up.discarded + self.down.discarded,
            last_up_at=self.up.last_delivered_at,
            last_down_at=self.down.last_delivered_at,
            client_closed_at=self.client_closed_at,
            target_closed_at=self.target_closed_at,
        )


class TcpProxy:
    """Listens on a free loopback port (`port`) and forwards each connection to `target`.

    `start()` (or `with`) starts it; `close()` closes every socket and stops its thread.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.0)  # non-blocking
        self.host = LOOPBACK
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.settimeout(0.0)
        self._wake_w.settimeout(0.0)
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._silent = False
        self._delay_up_s = 0.0
        self._delay_down_s = 0.0
        self._refused = 0
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )
        self._error: BaseException | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- control

    def start(self) -> Self:
        self._thread.start()
        return self

    def silence(self) -> None:
        """Stop forwarding, both ways, on every connection (new ones too); close nothing."""
        with self._lock:
            self._silent = True
            for conn in self._connections:
                if conn.mode is Mode.FORWARD:
                    conn.mode = Mode.SILENT
        self._wake()

    def resume(self) -> None:
        """Forward again, what waited first; dead connections stay dead."""
        with self._lock:
            self._silent = False
            for conn in self._connections:
                if conn.mode is Mode.SILENT:
                    conn.mode = Mode.FORWARD
        self._wake()

    def blackhole_existing(self) -> None:
        """The connections open now never forward again; new connections are not affected."""
        with self._lock:
            for conn in self._connections:
                if conn.mode in (Mode.FORWARD, Mode.SILENT):
                    conn.mode = Mode.DEAD
                    conn.up.drop_held()
                    conn.down.drop_held()
        self._wake()

    def delay_downstream(self, seconds: float) -> None:
        """Write what the target sends to the client `seconds` after it arrived (0: at once)."""
        with self._lock:
            self._delay_down_s = max(0.0, seconds)
        self._wake()

    def delay_upstream(self, seconds: float) -> None:
        """Write what the client sends to the target `seconds` after it arrived (0: at once)."""
        with self._lock:
            self._delay_up_s = max(0.0, seconds)
        self._wake()

    def close(self) -> None:
        """Close the listener and every connection (both sides see the close); idempotent."""
        with self._lock:
            self._closing = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(_JOIN_TIMEOUT_S)
        with self._lock:
            for conn in self._connections:
                self._close_connection(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()
        if self._error is not None:
            raise RuntimeError(f"the proxy to {self.target} failed") from self._error

    # ---- what it saw

    @property
    def silent(self) -> bool:
        with self._lock:
            return self._silent

    @property
    def bytes_up(self) -> int:
        """Bytes written to the target, over every connection."""
        with self._lock:
            return sum(conn.up.delivered for conn in self._connections)

    @property
    def bytes_down(self) -> int:
        """Bytes written to the clients, over every connection."""
        with self._lock:
            return sum(conn.down.delivered for conn in self._connections)

    @property
    def refused(self) -> int:
        """Connections accepted and closed at once because the target did not answer."""
        with self._lock:
            return self._refused

    def connections(self) -> list[ConnectionInfo]:
        """Every connection accepted so far, in order."""
        with self._lock:
            return [conn.info() for conn in self._connections]

    # ---- the thread

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while True:
                with self._lock:
                    if self._closing:
                        return
                    timeout = self._prepare(time.monotonic())
                events = self._selector.select(timeout)
                with self._lock:
                    for key, mask in events:
                        if not self._closing:
                            self._handle(cast("socket.socket", key.fileobj), mask)
        except BaseException as exc:  # reported by close()
            self._error = exc
            raise

    def _prepare(self, now: float) -> float | None:
        """Move what is due to the output buffers, register what each socket waits for; the
        time until the next chunk is due."""
        timeout: float | None = None
        for conn in self._connections:
            wanted: dict[socket.socket, int] = dict.fromkeys(conn.open_sockets, 0)
            if conn.mode is Mode.FORWARD:
                for flow in (conn.up, conn.down):
                    wait = self._forward(flow, now, wanted)
                    if wait is not None:
                        timeout = wait if timeout is None else min(timeout, wait)
            elif conn.mode is Mode.DEAD:
                wanted = dict.fromkeys(wanted, selectors.EVENT_READ)
            for sock, mask in wanted.items():
                self._register(sock, mask, conn)
        return timeout

    @staticmethod
    def _forward(flow: _Flow, now: float, wanted: dict[socket.socket, int]) -> float | None:
        """What one direction waits for (added to `wanted`); the time until its next chunk."""
        while flow.queue and flow.queue[0][0] <= now:
            flow.out += flow.queue.popleft()[1]
        if flow.src in wanted and not flow.ended and flow.held() < _MAX_HELD:
            wanted[flow.src] |= selectors.EVENT_READ
        if flow.dst in wanted and flow.out:
            wanted[flow.dst] |= selectors.EVENT_WRITE
        return flow.queue[0][0] - now if flow.queue else None

    def _register(self, sock: socket.socket, mask: int, conn: _Connection) -> None:
        try:
            key = self._selector.get_key(sock)
        except (KeyError, ValueError):
            if mask:
                self._selector.register(sock, mask, conn)
            return
        if not mask:
            self._selector.unregister(sock)
        elif key.events != mask:
            self._selector.modify(sock, mask, conn)

    def _handle(self, sock: socket.socket, mask: int) -> None:
        if sock is self._listener:
            self._accept()
            return
        if sock is self._wake_r:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(_CHUNK)
            return
        try:
            conn: _Connection = self._selector.get_key(sock).data
        except (KeyError, ValueError):  # closed while handling an earlier event
            return
        if conn.mode is Mode.SILENT:  # silenced since select() returned
            return
        if mask & selectors.EVENT_READ:
            self._read(conn, sock)
        if mask & selectors.EVENT_WRITE and sock in conn.open_sockets:
            self._write(conn, sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            target = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT_S)
        except OSError:
            self._refused += 1
            client.close()
            return
        for sock in (client, target):
            sock.settimeout(0.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(
            number=len(self._connections) + 1,
            client=client,
            target=target,
            mode=Mode.SILENT if self._silent else Mode.FORWARD,
            accepted_at=time.monotonic(),
            up=_Flow(client, target),
            down=_Flow(target, client),
            open_sockets={client, target},
        )
        self._connections.append(conn)

    def _read(self, conn: _Connection, sock: socket.socket) -> None:
        flow = conn.up if sock is conn.client else conn.down
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        now = time.monotonic()
        if not data:
            self._ended(conn, flow, now)
            return
        if conn.mode is Mode.DEAD:
            flow.discarded += len(data)
            return
        delay = self._delay_up_s if flow is conn.up else self._delay_down_s
        flow.last_due = max(flow.last_due, now + delay)  # order kept when the delay shrinks
        flow.queue.append((flow.last_due, data))

    def _ended(self, conn: _Connection, flow: _Flow, now: float) -> None:
        flow.ended = True
        if flow is conn.up:
            conn.client_closed_at = now
        else:
            conn.target_closed_at = now
        if conn.mode is Mode.DEAD:
            # Nobody is told: only this side's socket is closed.
            self._close_socket(conn, flow.src)
            if not conn.open_sockets:
                conn.mode = Mode.CLOSED
            return
        self._close_if_done(conn, flow)

    def _write(self, conn: _Connection, sock: socket.socket) -> None:
        flow = conn.up if sock is conn.target else conn.down
        if conn.mode is not Mode.FORWARD or not flow.out:
            return  # dead (or emptied) since select() returned: nothing is delivered
        try:
            sent = sock.send(flow.out)
        except BlockingIOError:
            return
        except OSError:
            # The receiving side is gone: what it did not take is lost, the connection ends.
            (conn.up if flow is conn.down else conn.down).ended = True
            flow.drop_held()
            self._close_connection(conn)
            return
        del flow.out[:sent]
        flow.delivered += sent
        flow.last_delivered_at = time.monotonic()
        self._close_if_done(conn, flow)

    def _close_if_done(self, conn: _Connection, flow: _Flow) -> None:
        """A side ended: once what it sent is written, the connection is closed (both sides)."""
        if flow.ended and not flow.out and not flow.queue:
            self._close_connection(conn)

    def _close_socket(self, conn: _Connection, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        conn.open_sockets.discard(sock)
        sock.close()

    def _close_connection(self, conn: _Connection) -> None:
        if conn.mode is Mode.CLOSED:
            return
        for flow in (conn.up, conn.down):
            flow.drop_held()
        for sock in list(conn.open_sockets):
            self._close_socket(conn, sock)
        conn.mode = Mode.CLOSED
