"""The decoder's only Redis module: reading frames and the atomic frame -> record handoff.

Reading follows architecture.md "Delivery guarantees" item 2: a replica reads its own pending
entries first (XREADGROUP from id 0), then new ones (">"), and claims entries left idle by
replicas that are gone (XAUTOCLAIM). The handoff runs as one Lua script: XACK the frame, and
append its output (record or dead letter) only if that XACK acknowledged it. When two replicas
race for one frame, only the first XACK returns 1, so the frame yields exactly one output; a
MULTI/EXEC could not make the append depend on the XACK's result. One script call carries a
whole batch of handoffs, so a batch costs one round trip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

from redis.exceptions import ResponseError

from gateway_common.redis_conn import REDIS_UNAVAILABLE, connect, ensure_group
from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, entry_id_key

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import redis

    from gateway_common.streams import StreamKeys

__all__ = [
    "REDIS_STATE_ERRORS",
    "REDIS_UNAVAILABLE",
    "Claimed",
    "FrameHandoff",
    "Output",
    "StreamEntry",
]

#: Redis answered with an error about its state (NOGROUP after it lost its data, OOM,
#: READONLY): worth waiting and setting up again, like an outage.
REDIS_STATE_ERRORS: Final[tuple[type[Exception], ...]] = (ResponseError,)

# KEYS: frames, records, dead. ARGV: group, entry field, then (frame id, "r"|"d"|"n", entry)
# triples ("n": nothing to append, a command answer already applied to its command's state).
# Returns one 0/1 per triple: 1 when this call acknowledged the frame and appended its output.
_HANDOFF_LUA: Final = """
local acked = {}
local n = 0
for i = 3, #ARGV, 3 do
  local ok = redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if ok == 1 and ARGV[i + 1] ~= 'n' then
    local target = KEYS[2]
    if ARGV[i + 1] == 'd' then target = KEYS[3] end
    redis.call('XADD', target, '*', ARGV[2], ARGV[i + 2])
  end
  n = n + 1
  acked[n] = ok
end
return acked
"""


_TARGETS: Final = {"records": "r", "dead": "d", "none": "n"}


class StreamEntry(NamedTuple):
    entry_id: str
    fields: Mapping[bytes, bytes]
    """Empty when the entry was deleted from the stream while still pending."""


class Output(NamedTuple):
    """What a frame becomes: its id, the target stream and the encoded entry (`none`: the
    frame is only acknowledged, a command answer applied to its command)."""

    frame_id: str
    target: Literal["records", "dead", "none"]
    data: bytes


class Claimed(NamedTuple):
    next_cursor: str
    entries: list[StreamEntry]
    deleted_ids: list[str]
    """Pending entries that no longer exist in the stream; Redis dropped them from the PEL."""


def _entries(raw: Any) -> list[StreamEntry]:
    return [StreamEntry(entry_id.decode(), fields or {}) for entry_id, fields in raw]


class FrameHandoff:
    """One replica's view of `{p}:frames` in the `decoder` group."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        consumer: str,
        *,
        batch_size: int,
        block_ms: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self.consumer = consumer
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._script = client.register_script(_HANDOFF_LUA)

    @classmethod
    def connect(
        cls, url: str, keys: StreamKeys, consumer: str, *, batch_size: int, block_ms: int
    ) -> FrameHandoff:
        """A handoff over a new client for `url` (it connects lazily)."""
        return cls(connect(url), keys, consumer, batch_size=batch_size, block_ms=block_ms)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def close(self) -> None:
        self._client.close()

    def ensure_group(self) -> None:
        ensure_group(self._client, self._keys.frames, DECODER_GROUP)

    def read_pending(self, after_id: str) -> list[StreamEntry]:
        """This consumer's own pending entries with ids above `after_id` (no blocking)."""
        return self._read(after_id, block_ms=None)

    def read_new(self) -> list[StreamEntry]:
        """New entries, waiting up to block_ms for them."""
        return self._read(">", block_ms=self._block_ms)

    def _read(self, start: str, block_ms: int | None) -> list[StreamEntry]:
        reply: Any = self._client.xreadgroup(
            DECODER_GROUP,
            self.consumer,
            {self._keys.frames: start},
            count=self._batch_size,
            block=block_ms,
        )
        if not reply:
            return []
        return _entries(reply[0][1])

    def claim(self, cursor: str, min_idle_ms: int) -> Claimed:
        """Take over entries pending longer than `min_idle_ms` on any consumer (XAUTOCLAIM)."""
        reply: Any = self._client.xautoclaim(
            self._keys.frames,
            DECODER_GROUP,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id=cursor,
            count=self._batch_size,
        )
        next_cursor = reply[0].decode()
        deleted = [entry_id.decode() for entry_id in reply[2]] if len(reply) > 2 else []
        return Claimed(next_cursor, _entries(reply[1]), deleted)

    def delivery_counts(self, entry_ids: Sequence[str]) -> dict[str, int]:
        """How many times each of these entries was delivered (XPENDING); absent when acked."""
        if not entry_ids:
            return {}
        low = min(entry_ids, key=entry_id_key)
        high = max(entry_ids, key=entry_id_key)
        wanted = set(entry_ids)
        counts: dict[str, int] = {}
        start = low
        while True:
            rows: Any = self._client.xpending_range(
                self._keys.frames, DECODER_GROUP, min=start, max=high, count=self._batch_size
            )
            for row in rows:
                entry_id = row["message_id"].decode()
                if entry_id in wanted:
                    counts[entry_id] = int(row["times_delivered"])
            if len(rows) < self._batch_size:
                return counts
            start = "(" + rows[-1]["message_id"].decode()

    def commit(self, outputs: Sequence[Output]) -> list[bool]:
        """Acknowledge each frame and append its output, atomically per frame.

        Returns, per output, whether this call did it (False: another replica had already
        acknowledged that frame, and nothing was appended).
        """
        if not outputs:
            return []
        args: list[bytes | str] = [DECODER_GROUP, ENTRY_FIELD]
        for output in outputs:
            args += (output.frame_id, _TARGETS[output.target], output.data)
        keys = [self._keys.frames, self._keys.records, self._keys.dead]
        reply: Any = self._script(keys=keys, args=args, client=self._client)
        return [int(flag) == 1 for flag in reply]
