"""Redis writes the publishing loop has decided on and not done yet.

Acknowledgements (with the registry entries they change) and dead letters wait here until
Redis takes them, so a Redis outage delays them without losing or repeating them.
Acknowledgements are written in batches: `due` says when the loop should write them (a batch
is full, the oldest has waited long enough, or a dead letter waits).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway_common.entries import DeadLetter, encode
from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_common.entries import Record
    from gateway_publisher.metrics import PublisherMetrics
    from gateway_publisher.record_source import RecordSource, StreamEntry
    from gateway_publisher.registry import DeviceRegistry

__all__ = ["STAGE", "Outbox"]

log = get_logger(__name__)

STAGE = "publisher"


class Outbox:
    def __init__(
        self,
        source: RecordSource,
        registry: DeviceRegistry,
        metrics: PublisherMetrics,
        clock: Callable[[], float],
        *,
        ack_batch: int = 1,
        ack_delay_s: float = 0.0,
    ) -> None:
        self._source = source
        self._registry = registry
        self._metrics = metrics
        self._clock = clock
        self._ack_batch = ack_batch
        self._ack_delay_s = ack_delay_s
        self._oldest_ack = 0.0
        """time.monotonic() of the oldest acknowledgement not written yet."""
        self._acks: list[tuple[str, Record]] = []
        self._dead: list[tuple[str, bytes, str]] = []
        """(entry id, encoded dead letter, reason label of the metric)."""

    def ack(self, entry_id: str, record: Record) -> None:
        """The record is done (published, or a configuration file): acknowledge it."""
        if not self._acks:
            self._oldest_ack = time.monotonic()
        self._acks.append((entry_id, record))

    @property
    def acks_waiting(self) -> int:
        """Acknowledgements decided on and not written yet."""
        return len(self._acks)

    def due_in(self, now: float) -> float | None:
        """Seconds until the writes are due (0: now), None when there is nothing to write."""
        if self._dead or len(self._acks) >= self._ack_batch:
            return 0.0
        if not self._acks:
            return None
        return max(0.0, self._oldest_ack + self._ack_delay_s - now)

    def dead(
        self,
        entry: StreamEntry,
        reason: str,
        metric_reason: str,
        record: Record | None,
        attempts: int,
    ) -> None:
        """Move the entry to the dead letters, with its reason."""
        letter = DeadLetter(
            reason=reason,
            stage=STAGE,
            source_stream=self._source.keys.records,
            source_id=entry.entry_id,
            raw=entry.data or b"",
            failed_at=self._clock(),
            received_at=record.received_at if record else None,
            attempts=attempts,
            detail={"device_id": record.device_id} if record else {},
        )
        self._dead.append((entry.entry_id, encode(letter), metric_reason))
        log.warning("dead_letter", entry_id=entry.entry_id, reason=reason, attempts=attempts)

    def ids(self) -> set[str]:
        """Entries decided on: still pending in Redis, but not to be published again."""
        ids = {entry_id for entry_id, _ in self._acks}
        ids.update(entry_id for entry_id, _, _ in self._dead)
        return ids

    def flush(self) -> None:
        """Write everything to Redis; raises the Redis error and keeps the rest for later."""
        if self._acks:
            changed = self._registry.updated(record for _, record in self._acks)
            self._source.ack(
                [entry_id for entry_id, _ in self._acks],
                {device: entry.to_bytes() for device, entry in changed.items()},
            )
            self._registry.commit(changed)
            self._acks.clear()
        while self._dead:
            entry_id, letter, metric_reason = self._dead[0]
            if self._source.dead_letter(entry_id, letter):
                self._metrics.dead_letters.labels(reason=metric_reason).inc()
            self._dead.pop(0)
