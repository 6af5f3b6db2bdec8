"""Graceful stop: SIGTERM and SIGINT set an event that every loop waits on (no busy waits)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["StopSignal"]


class StopSignal:
    """A stop request, set by a signal or by code (tests, a fatal error elsewhere)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def install(self) -> StopSignal:
        """Route SIGTERM and SIGINT to this stop request (call from the main thread)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.set(signal.Signals(signum).name)

    def set(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Sleep until stopped or `timeout_s` passed; True when stopped."""
        return self._event.wait(timeout_s)
