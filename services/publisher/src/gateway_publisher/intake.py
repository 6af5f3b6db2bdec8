"""Records in: the publisher's own pending records first, then new ones, decoded into messages.

A record read here stays pending in Redis until the publishing loop acknowledges it, so what is
read and not yet published can always be forgotten and read again (`restart`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_common.entries import EntryError, decode_record
from gateway_common.logs import get_logger
from gateway_publisher.payloads import ddata_payload
from gateway_publisher.record_source import NEW_ENTRIES, PENDING_START
from gateway_publisher.topics import TopicCache

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_common.entries import Record
    from gateway_publisher.outbox import Outbox
    from gateway_publisher.record_source import RecordSource, StreamEntry
    from gateway_publisher.topics import DeviceTopics, TopicScheme

__all__ = ["Intake", "Ready"]

log = get_logger(__name__)


@dataclass(slots=True)
class Ready:
    """A record read from Redis, decoded, waiting for room in the window."""

    entry: StreamEntry
    record: Record
    payload: bytes
    topics: DeviceTopics


class Intake:
    def __init__(
        self, source: RecordSource, topics: TopicScheme, outbox: Outbox, *, downlink: bool = False
    ) -> None:
        self._downlink = downlink
        self._source = source
        self._topics = TopicCache(topics)
        self._outbox = outbox
        self._cursor = PENDING_START

    def restart(self) -> None:
        """Read our pending records again from the first (after a reconnection or an error)."""
        self._cursor = PENDING_START

    def read(
        self, count: int, block_ms: int | None, in_hand: Callable[[], set[str]]
    ) -> list[StreamEntry]:
        """Up to `count` entries: pending ones not `in_hand()` first, then new ones.

        Only the read of new entries blocks (up to `block_ms`; None: not at all).
        """
        while self._cursor != NEW_ENTRIES:
            entries = self._source.read(self._cursor, count, None)
            if not entries:
                self._cursor = NEW_ENTRIES
                log.info("pending_replayed")
                break
            self._cursor = entries[-1].entry_id
            # Our pending entries include those already in hand (in flight, waiting, or
            # answered but not yet acknowledged because Redis was away): skip those.
            known = in_hand()
            fresh = [e for e in entries if e.entry_id not in known]
            if fresh:
                return fresh
        return self._source.read(NEW_ENTRIES, count, block_ms)

    def prepare(self, entry: StreamEntry) -> Ready | None:
        """Decode and build the message; config files are acknowledged, bad entries dead."""
        if entry.data is None:
            self._outbox.dead(entry, "entry has no data (deleted?)", "undecodable", None, 1)
            return None
        try:
            record = decode_record(entry.data)
        except EntryError as exc:
            self._outbox.dead(entry, f"undecodable record: {exc}", "undecodable", None, 1)
            return None
        try:  # the per-message boundary: whatever fails here dead-letters this record only
            topics = self._topics.get(record.device_id)
            payload = ddata_payload(record, downlink=self._downlink)
        except Exception as exc:
            self._outbox.dead(entry, f"unpublishable record: {exc}", "bad_record", record, 1)
            return None
        if payload is None:
            self._outbox.ack(entry.entry_id, record)
            return None
        return Ready(entry, record, payload, topics)
