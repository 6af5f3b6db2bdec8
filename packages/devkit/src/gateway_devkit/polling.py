"""The one bounded wait on a condition, for the tests, the bench and the demo (the services
themselves never poll: they block on their reads with a timeout)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
    """Call `probe` every `interval_s` until it returns something truthy or `timeout_s` passed;
    its last value (truthy: the condition came in time). `assert wait_until(...)` in tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)
