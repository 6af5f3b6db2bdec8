"""The messages in flight on the current connection, and the DBIRTH each DDATA went out behind.

A DDATA goes out right behind its device's DBIRTH, without waiting for the DBIRTH's PUBACK
(unless the broker takes one message at a time: Receive Maximum 1; publisher.py). If
the broker then refuses the DBIRTH, the DDATA published behind it on that connection must not
count as delivered, whatever the broker answers to them (protocol.md §4: the DBIRTH comes
before the first DDATA): `birth_answered` takes them back. Their own answers are ignored when
they come; until then they still occupy the window (the broker counts them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_publisher.intake import Ready

__all__ = ["InFlight", "Sent"]


@dataclass(slots=True)
class Sent:
    """One QoS 1 message published and not answered yet."""

    device_id: str
    ready: Ready | None
    """The record of a DDATA; None for a DBIRTH."""
    birth_mid: int | None = None
    """A DDATA: the mid of its device's DBIRTH while that DBIRTH is not answered yet."""
    taken_back: bool = False
    """A DDATA whose DBIRTH was refused: its record is handled already, ignore its answer."""
    sent_at: float = 0.0
    """When it was published (the in-flight clock, time.monotonic() by default)."""


class InFlight:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sent: dict[int, Sent] = {}
        self._births: dict[str, int] = {}
        """Device id -> mid of its DBIRTH not answered yet."""

    def __len__(self) -> int:
        return len(self._sent)

    def clear(self) -> None:
        """The connection is gone: nothing will be answered."""
        self._sent.clear()
        self._births.clear()

    def add_birth(self, mid: int, device_id: str) -> None:
        self._sent[mid] = Sent(device_id, None, sent_at=self._clock())
        self._births[device_id] = mid

    def add_data(self, mid: int, ready: Ready) -> None:
        device_id = ready.record.device_id
        self._sent[mid] = Sent(device_id, ready, self._births.get(device_id), sent_at=self._clock())

    def waited(self, mid: int) -> float | None:
        """Seconds since message `mid` was published (None: not one of this connection's)."""
        sent = self._sent.get(mid)
        return None if sent is None else self._clock() - sent.sent_at

    def pop(self, mid: int) -> Sent | None:
        """The message answered by the broker (None: not one of this connection's)."""
        sent = self._sent.pop(mid, None)
        if sent is not None and sent.ready is None and self._births.get(sent.device_id) == mid:
            del self._births[sent.device_id]
        return sent

    def birth_answered(self, mid: int, *, ok: bool) -> list[Ready]:
        """The DBIRTH `mid` was answered. Accepted: the DDATA behind it may be acknowledged.
        Refused: they are taken back, and their records returned in the order they went out."""
        taken: list[Ready] = []
        for sent in self._sent.values():
            if sent.birth_mid != mid:
                continue
            sent.birth_mid = None
            if not ok and sent.ready is not None and not sent.taken_back:
                sent.taken_back = True
                taken.append(sent.ready)
        return taken

    def births(self) -> set[str]:
        """The devices whose DBIRTH waits for an answer."""
        return set(self._births)

    def records(self) -> list[Ready]:
        """The records whose DDATA waits for an answer, in the order they went out."""
        return [
            sent.ready
            for sent in self._sent.values()
            if sent.ready is not None and not sent.taken_back
        ]

    def entry_ids(self) -> set[str]:
        """The records whose DDATA waits for an answer."""
        return {
            sent.ready.entry.entry_id
            for sent in self._sent.values()
            if sent.ready is not None and not sent.taken_back
        }
