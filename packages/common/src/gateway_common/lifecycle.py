"""Graceful stop: SIGTERM and SIGINT set an event that every loop waits on (no busy waits).

A signal handler must not set a `threading.Event` itself. Python runs the handler in the main
thread between two bytecodes, and that may be inside `Event.wait()` while the main thread holds
the event's internal (non-reentrant) lock: `Event.set()` there waits for a lock its own thread
holds, and the process never stops (seen: a simulator that ignored SIGTERM under load). So the
handler only writes the signal's number to a pipe, a system call that takes no lock, and a
watcher thread turns that byte into the stop request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["StopSignal"]

#: The signals that ask a service to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """A stop request, set by a signal or by code (tests, a fatal error elsewhere)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._pipe_w: int | None = None

    def install(self) -> StopSignal:
        """Route SIGTERM and SIGINT to this stop request (call from the main thread)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # a flood of signals must never block the handler
        self._pipe_w = write_fd
        threading.Thread(
            target=self._watch_signals, args=(read_fd,), name="stop-signal", daemon=True
        ).start()
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # No lock may be taken here (see the module docstring): only a write to the pipe.
        if self._pipe_w is not None:
            with contextlib.suppress(BlockingIOError):  # full: a stop byte is waiting already
                os.write(self._pipe_w, bytes([signum]))

    def _watch_signals(self, read_fd: int) -> None:
        while received := os.read(read_fd, 1):
            self.set(signal.Signals(received[0]).name)

    def set(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Sleep until stopped or `timeout_s` passed; True when stopped."""
        return self._event.wait(timeout_s)
