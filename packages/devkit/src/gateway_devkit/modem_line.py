"""The modem's serial line as a pty pair: the modem's bytes are written on the master, ingest
opens `path` (the raw slave) as its serial port."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import termios
import time
import tty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["LINE_BYTES_PER_S", "ModemLine"]

#: 115200 baud, 8N1: ten bits on the wire per byte.
LINE_BYTES_PER_S = 115200 / 10
WRITE_CHUNK = 4096


class ModemLine:
    """A pty pair in raw mode.

    A lossy line behaves like a UART: it does not wait for a reader, so when the pty's receive
    buffer is full (no ingest has read it for a while) the bytes that do not fit are lost, and a
    frame of which any byte was lost is lost on the line. Otherwise writes wait for room.
    """

    def __init__(self, *, lossy: bool = False) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.lossy = lossy
        if lossy:
            flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
            fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    def write(self, data: bytes) -> bool:
        """Write `data` (in chunks); False if a lossy line lost some of it."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.master, view[:WRITE_CHUNK])
            except BlockingIOError:
                return False
            view = view[written:]
        return True

    def paced(
        self,
        frames: Sequence[bytes],
        clock: Callable[[], float] = time.time,
        bytes_per_s: float = LINE_BYTES_PER_S,
    ) -> list[float | None]:
        """Write each frame whole when its last byte would leave the UART; per frame, `clock()`
        once it was written (None: lost on a lossy line)."""
        stamps: list[float | None] = []
        due = time.monotonic()
        for frame in frames:
            due += len(frame) / bytes_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamps.append(clock() if self._write_whole(frame) else None)
        return stamps

    def _write_whole(self, frame: bytes) -> bool:
        if not self.lossy:
            return self.write(frame)
        try:  # one write: what does not fit is lost, as on a UART
            return os.write(self.master, frame) == len(frame)
        except BlockingIOError:
            return False

    def unread(self) -> int:
        """Bytes the line delivered that nobody has read yet (the pty's input queue)."""
        buf = array.array("i", [0])
        fcntl.ioctl(self.slave, termios.FIONREAD, buf)
        return buf[0]

    def hang_up(self) -> None:
        """Close the modem's side: a reader of `path` sees the line hang up."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        self.hang_up()
        if self.slave >= 0:
            with contextlib.suppress(OSError):
                os.close(self.slave)
            self.slave = -1
