"""Every Redis operation of the publisher: read records, acknowledge, dead-letter, registry, and
take over the records another consumer name left pending."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from redis.exceptions import RedisError, ResponseError

from gateway_common.group_info import read_group
from gateway_common.redis_conn import ensure_group
from gateway_common.streams import ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import redis

__all__ = [
    "NEW_ENTRIES",
    "PENDING_START",
    "REDIS_ERRORS",
    "RecordSource",
    "StreamEntry",
    "TakenOver",
]

#: XREADGROUP id reading the consumer's own pending entries from the start.
PENDING_START: Final = "0"
#: XREADGROUP id reading entries never delivered to any consumer.
NEW_ENTRIES: Final = ">"
#: Any other Redis failure, error replies included (OOM when Redis is full, MISCONF, READONLY,
#: WRONGTYPE): the loop waits, sets up again and retries, like for an outage.
REDIS_ERRORS: Final[tuple[type[Exception], ...]] = (RedisError,)
#: Pending entries moved by one call of the take-over script (one atomic step each).
_TAKE_OVER_BATCH: Final = 1000

# Acknowledge the record, and append its dead letter only if the acknowledgement succeeded:
# a record lands in the dead letters once, even if two publishers raced for it.
_DEAD_LETTER_LUA: Final = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
    redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[4])
end
return acked
"""

# Move the entries other consumers of the group left pending to this consumer (XCLAIM JUSTID:
# the delivery count stays), at most ARGV[3] of them, and delete every other consumer left
# with nothing pending. One script, so a consumer is deleted only if it has nothing pending at
# that very moment (XGROUP DELCONSUMER drops the pending entries of the consumer it deletes).
# KEYS[1]: records. ARGV: group, this consumer, batch.
# Returns {more, then per other consumer: name, entries asked for, entries moved, deleted 0/1};
# XCLAIM drops from the pending list, instead of moving, an entry deleted from the stream.
_TAKE_OVER_LUA: Final = """
local budget = tonumber(ARGV[3])
local out = {0}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending = nil, 0
  for i = 1, #consumer, 2 do
    if consumer[i] == 'name' then name = consumer[i + 1] end
    if consumer[i] == 'pending' then pending = consumer[i + 1] end
  end
  if name ~= ARGV[2] then
    local asked, moved = 0, 0
    if pending > 0 and budget > 0 then
      local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], '0'}
      for _, entry in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', budget, name)) do
        args[#args + 1] = entry[1]
        asked = asked + 1
      end
      if asked > 0 then
        args[#args + 1] = 'JUSTID'
        moved = #redis.call(unpack(args))
      end
      budget = budget - asked
      pending = pending - asked
    end
    local deleted = 0
    if pending <= 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      deleted = 1
    else
      out[1] = 1
    end
    out[#out + 1] = name
    out[#out + 1] = asked
    out[#out + 1] = moved
    out[#out + 1] = deleted
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class TakenOver:
    """What the publisher took over from another consumer name of its group."""

    consumer: str
    records: int
    """Pending entries now pending on this consumer (published before any new one)."""
    dropped: int
    """Pending entries whose record had been deleted from the stream (Redis dropped them)."""
    deleted: bool
    """The consumer was deleted from the group (nothing left pending on it)."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    entry_id: str
    data: bytes | None
    """The entry's `d` field; None when the entry is gone or has no such field."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RecordSource:
    def __init__(self, client: redis.Redis, keys: StreamKeys, consumer: str) -> None:
        self._client = client
        self._keys = keys
        self._consumer = consumer
        self._dead_letter_script = client.register_script(_DEAD_LETTER_LUA)
        self._take_over_script = client.register_script(_TAKE_OVER_LUA)

    @property
    def keys(self) -> StreamKeys:
        return self._keys

    def ensure_group(self) -> None:
        """Create the group unless it exists (also while Redis is full: see `ensure_group`)."""
        ensure_group(self._client, self._keys.records, PUBLISHER_GROUP)

    def take_over(self) -> list[TakenOver]:
        """Make the entries pending on other consumers of the group this consumer's own, and
        delete those consumers (exactly one publisher runs per MQTT identity: they are gone)."""
        totals: dict[str, list[int]] = {}
        while True:
            reply: Any = self._take_over_script(
                keys=[self._keys.records],
                args=[PUBLISHER_GROUP, self._consumer, _TAKE_OVER_BATCH],
            )
            asked_now = 0
            for i in range(1, len(reply), 4):
                asked, moved, deleted = (int(value) for value in reply[i + 1 : i + 4])
                total = totals.setdefault(_text(reply[i]), [0, 0, 0])
                total[0] += moved
                total[1] += asked - moved
                total[2] |= deleted
                asked_now += asked
            if not int(reply[0]) or asked_now == 0:
                break
        return [
            TakenOver(name, moved, dropped, bool(deleted))
            for name, (moved, dropped, deleted) in totals.items()
        ]

    def read(self, start: str, count: int, block_ms: int | None) -> list[StreamEntry]:
        """Read up to `count` entries after `start` (an id of our pending entries, or `>`)."""
        try:
            reply: Any = self._client.xreadgroup(
                PUBLISHER_GROUP,
                self._consumer,
                {self._keys.records: start},
                count=count,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # the stream was deleted under us: start again, empty
            return []
        entries: list[StreamEntry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                data = fields.get(ENTRY_FIELD) if fields else None
                entries.append(StreamEntry(_text(entry_id), data))
        return entries

    def ack(self, entry_ids: Sequence[str], devices: Mapping[str, bytes]) -> RedisError | None:
        """Acknowledge records, then write registry entries: one round trip, not a transaction.

        Redis refuses an HSET while it is full (XACK is never refused for memory), and a
        refused command inside MULTI aborts the whole transaction: the registry write must
        never hold the acknowledgements back. Raises the XACK's error; returns the HSET's.
        """
        if not entry_ids and not devices:
            return None
        pipe = self._client.pipeline(transaction=False)
        if entry_ids:
            pipe.xack(self._keys.records, PUBLISHER_GROUP, *entry_ids)
        if devices:
            pipe.hset(self._keys.devices, mapping=cast("Mapping[Any, Any]", devices))
        replies = pipe.execute(raise_on_error=False)
        if entry_ids and isinstance(replies[0], RedisError):
            raise replies[0]
        refused = replies[-1] if devices else None
        return refused if isinstance(refused, RedisError) else None

    def dead_letter(self, entry_id: str, letter: bytes) -> bool:
        """Acknowledge a record and append its dead letter atomically; False if not ours."""
        acked: Any = self._dead_letter_script(
            keys=[self._keys.records, self._keys.dead],
            args=[PUBLISHER_GROUP, entry_id, ENTRY_FIELD, letter],
        )
        return bool(acked)

    def load_devices(self) -> dict[str, bytes]:
        raw: Any = self._client.hgetall(self._keys.devices)
        return {_text(k): v for k, v in raw.items()}

    def backlog(self) -> int:
        """Records the publisher group has not acknowledged: pending plus never delivered."""
        group = read_group(self._client, self._keys.records, PUBLISHER_GROUP)
        return 0 if group is None else group.pending + (group.lag or 0)
