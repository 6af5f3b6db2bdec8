"""Every Redis operation of the publisher: read records, acknowledge, dead-letter, registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from redis.exceptions import ResponseError

from gateway_common.redis_conn import ensure_group
from gateway_common.streams import ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import redis

__all__ = ["NEW_ENTRIES", "PENDING_START", "RecordSource", "StreamEntry"]

#: XREADGROUP id reading the consumer's own pending entries from the start.
PENDING_START: Final = "0"
#: XREADGROUP id reading entries never delivered to any consumer.
NEW_ENTRIES: Final = ">"

# Acknowledge the record, and append its dead letter only if the acknowledgement succeeded:
# a record lands in the dead letters once, even if two publishers raced for it.
_DEAD_LETTER_LUA: Final = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
    redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[4])
end
return acked
"""


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

    @property
    def keys(self) -> StreamKeys:
        return self._keys

    def ensure_group(self) -> None:
        ensure_group(self._client, self._keys.records, PUBLISHER_GROUP)

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

    def ack(self, entry_ids: Sequence[str], devices: Mapping[str, bytes]) -> None:
        """Acknowledge records and write their devices' registry entries, in one transaction."""
        pipe = self._client.pipeline(transaction=True)
        if entry_ids:
            pipe.xack(self._keys.records, PUBLISHER_GROUP, *entry_ids)
        if devices:
            pipe.hset(self._keys.devices, mapping=cast("Mapping[Any, Any]", devices))
        pipe.execute()

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
        try:
            groups: Any = self._client.xinfo_groups(self._keys.records)
        except ResponseError:  # no such stream (yet)
            return 0
        for group in groups:
            if _text(group["name"]) == PUBLISHER_GROUP:
                return int(group.get("pending") or 0) + int(group.get("lag") or 0)
        return 0
