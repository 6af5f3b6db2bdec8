"""Every frame and every record, read back from the streams as they are written.

Retention trims both streams while the soak runs, so what a check needs of each entry is kept
here, read in a thread of its own with plain XREAD (no consumer group: the soak must not hold
trimming back): the frames' ids, the frame each record came from, the kinds of the records and
the DDATA each device must receive (one per energy or button record). An entry trimmed before
the tally read it would show as a count below Redis's `entries-added`.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, cast

from gateway_common.entries import decode_record
from gateway_common.streams import ENTRY_FIELD

if TYPE_CHECKING:
    import redis

__all__ = ["PUBLISHED_KINDS", "StreamTally", "entry_number"]

#: The record kinds the publisher sends as DDATA (configuration files are only acknowledged).
PUBLISHED_KINDS: Final = frozenset({"energy", "button"})
_SEQ_BITS: Final = 24
_BLOCK_MS: Final = 500
_COUNT: Final = 2000


def entry_number(entry_id: bytes | str) -> int:
    """A stream entry id (`ms-seq`) as one int, ordered as the ids are."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    number = int(seq)
    if number >= 1 << _SEQ_BITS:
        raise ValueError(f"entry id {text}: sequence too large")
    return (int(ms) << _SEQ_BITS) | number


class StreamTally:
    """Reads `frames` and `records` from their start until `stop()`."""

    def __init__(self, client: redis.Redis, frames: str, records: str) -> None:
        self._client = client
        self._frames = frames
        self._records = records
        self.frame_ids: set[int] = set()
        self.record_frame_ids: set[int] = set()
        self.records = 0
        self.kinds: Counter[str] = Counter()
        self.ddata_per_device: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cursors = {frames: "0-0", records: "0-0"}
        self._thread = threading.Thread(target=self._run, name="soak-tally", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop once everything written so far has been read; raises what the thread met."""
        self._stop.set()
        self._thread.join(60)
        if self._thread.is_alive():
            raise RuntimeError("the soak tally did not stop")
        if self.error is not None:
            raise RuntimeError(f"the soak tally failed: {self.error!r}") from self.error

    def counts(self) -> tuple[int, int, int]:
        """(frames, records, DDATA expected) read so far."""
        with self._lock:
            return len(self.frame_ids), self.records, sum(self.ddata_per_device.values())

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if not self._read_once() and stopping:
                    return
        except BaseException as exc:  # reported by stop() in the caller's thread
            self.error = exc

    def _read_once(self) -> bool:
        """One XREAD of both streams; whether it returned anything."""
        streams = cast("dict[Any, Any]", self._cursors)
        reply: Any = self._client.xread(streams, count=_COUNT, block=_BLOCK_MS)
        if not reply:
            return False
        for stream, entries in reply:
            key = stream.decode() if isinstance(stream, bytes) else stream
            if key == self._frames:
                self._add_frames(entries)
            else:
                self._add_records(entries)
            last = entries[-1][0]
            self._cursors[key] = last.decode() if isinstance(last, bytes) else last
        return True

    def _add_frames(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        numbers = [entry_number(entry_id) for entry_id, _fields in entries]
        with self._lock:
            self.frame_ids.update(numbers)

    def _add_records(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        records = [decode_record(fields[ENTRY_FIELD]) for _id, fields in entries]
        with self._lock:
            for record in records:
                self.records += 1
                self.record_frame_ids.add(entry_number(record.frame_id))
                self.kinds[record.kind] += 1
                if record.kind in PUBLISHED_KINDS:
                    self.ddata_per_device[record.device_id] += 1
