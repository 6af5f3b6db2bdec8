"""Capped exponential backoff with jitter, for reconnecting to Redis, the broker or the port."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    """Fraction of the delay added at random, so that replicas do not retry in step."""
    _next_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; grows until `max_s`."""
        delay = self._next_s
        self._next_s = min(self._next_s * self.factor, self.max_s)
        return delay * (1.0 + random.uniform(0.0, self.jitter))

    def reset(self) -> None:
        """Call after a success: the next failure starts again from `initial_s`."""
        self._next_s = self.initial_s
