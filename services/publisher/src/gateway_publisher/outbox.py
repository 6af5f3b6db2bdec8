"""Redis writes the publishing loop has decided on and not done yet.

Acknowledgements (with the registry entries they change) and dead letters wait here until
Redis takes them, so a Redis outage delays them without losing or repeating them.
Acknowledgements are written in batches: `due` says when the loop should write them (a batch
is full, the oldest has waited long enough, a dead letter waits, or a refused registry write
is to be tried again).

The registry entries go with the acknowledgements (same round trip) but never hold them back:
Redis refuses the HSET while it is full (maxmemory, noeviction) yet takes the XACK, which is
what lets the records be trimmed and memory freed. A refused registry write is kept (the
registry in memory is ahead of Redis's) and tried again with a capped backoff.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway_common.backoff import Backoff
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
#: Bounds of the delay before a refused registry write is tried again.
_REGISTRY_RETRY_MIN_S = 0.5
_REGISTRY_RETRY_MAX_S = 5.0


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
        self._unsaved: set[str] = set()
        """Devices whose registry entry in memory is newer than Redis's (a write was refused)."""
        self._registry_retry = Backoff(initial_s=_REGISTRY_RETRY_MIN_S, max_s=_REGISTRY_RETRY_MAX_S)
        self._registry_retry_at = 0.0
        """time.monotonic() when the unsaved registry entries are written again."""

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
        due = [self._oldest_ack + self._ack_delay_s] if self._acks else []
        if self._unsaved:
            due.append(self._registry_retry_at)
        return max(0.0, min(due) - now) if due else None

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

    def flush(self, *, final: bool = False) -> None:
        """Write everything to Redis; raises the Redis error and keeps the rest for later
        (a refused registry write is not raised: it is kept and tried again when due, or at
        once when `final`)."""
        retry_registry = bool(self._unsaved) and (
            final or time.monotonic() >= self._registry_retry_at
        )
        if self._acks or retry_registry:
            self._write_acks(retry_registry=retry_registry)
        if final and self._unsaved:
            log.warning("registry_not_saved", devices=len(self._unsaved))
        while self._dead:
            entry_id, letter, metric_reason = self._dead[0]
            if self._source.dead_letter(entry_id, letter):
                self._metrics.dead_letters.labels(reason=metric_reason).inc()
            self._dead.pop(0)

    def _write_acks(self, *, retry_registry: bool) -> None:
        changed = self._registry.updated(record for _, record in self._acks)
        devices: dict[str, bytes] = {}
        if retry_registry:
            for device in self._unsaved:
                entry = self._registry.get(device)
                if entry is not None:
                    devices[device] = entry.to_bytes()
        devices.update((device, entry.to_bytes()) for device, entry in changed.items())
        refused = self._source.ack([entry_id for entry_id, _ in self._acks], devices)
        self._registry.commit(changed)
        self._acks.clear()
        if refused is None:
            if self._unsaved:
                self._unsaved.difference_update(devices)
                if not self._unsaved:
                    log.info("registry_saved", devices=len(devices))
                    self._registry_retry.reset()
            return
        if not self._unsaved:
            log.warning("registry_write_refused", error=str(refused), devices=len(devices))
        else:
            log.debug("registry_write_refused", error=str(refused), devices=len(devices))
        self._unsaved.update(devices)
        self._registry_retry_at = time.monotonic() + self._registry_retry.next_delay()
