"""One device's readings over a window, for the device page's plots: the one module that knows
where the history comes from.

The frames archive `{p}:frames`, which the decoder trims to `GATEWAY_FRAMES_RETENTION_S` (7 days
by default; the console reads the same variable, so its longest window is what the archive
keeps), read from the window's start by entry id (no consumer group). A week of 500 devices is
some 500,000 frames, so the search for one device's runs inside Redis: a read-only script
(EVAL_RO, XRANGE only) looks at `_PAGE` entries per call and returns only those whose bytes
contain the device's address (the ALP is stored as is inside the msgpack entry), which are then
decoded here with the decoder's own codec (`gateway_common.records.decode_entry`): a plot shows
exactly the records the decoder made, or would make, of those frames. Each call holds Redis for
a few milliseconds; none writes.

The address searched for is the DEVICE_ID's value (protocol.md section 4: upper-case hex of the
sender address, no zero padding) as 8 bytes (a UID) when it needs more than 2, else as 2 bytes
(a VID). A frame that merely contains those bytes elsewhere (another UID ending in a VID's
bytes, a counter, a value) is dropped after decoding: its record's device id is not the one
asked for. Frames the decoder rejects are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway_common.entries import Record
from gateway_common.records import decode_entry
from gateway_ctl.output import as_text

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

    from gateway_common.streams import StreamKeys

__all__ = ["SOURCE", "Point", "Triple", "address_bytes", "read_history"]

#: What the plots are drawn from, as the page names it. How far back that reaches is the
#: setting `GATEWAY_FRAMES_RETENTION_S` (ConsoleSettings.frames_retention_s).
SOURCE: Final = "frames archive (kept 7 days), decoded as the decoder does"
_PAGE: Final = 2000
#: KEYS: the stream. ARGV: start id (inclusive, or "(" id), page size, the bytes to look for.
#: Returns {entries looked at, the last id looked at, the matching entries}.
_FIND_LUA: Final = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local found = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 2, #fields, 2 do
    if string.find(fields[i], ARGV[3], 1, true) then
      found[#found + 1] = entry
      break
    end
  end
end
local last = entries[#entries]
return {#entries, last and last[1] or '', found}
"""

Triple = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Point:
    at: float
    """Receive time (epoch seconds) of the frame the record came from."""
    link_budget: int
    energy: bool
    """An EnergyFile reading (the other files carry only the link budget)."""
    valid: bool
    """The meter could be read (`measurement_valid`); an invalid reading repeats stale values."""
    voltage_v: Triple | None = None
    active_energy_wh: Triple | None = None


def _triple(value: Any) -> Triple | None:
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value):
        return (value[0], value[1], value[2])
    return None


def _point(record: Record) -> Point:
    fields = record.fields
    if record.kind != "energy":
        return Point(record.received_at, record.link_budget, energy=False, valid=True)
    return Point(
        record.received_at,
        record.link_budget,
        energy=True,
        valid=fields.get("measurement_valid") is True,
        voltage_v=_triple(fields.get("voltage_v")),
        active_energy_wh=_triple(fields.get("active_energy_wh")),
    )


def address_bytes(device_id: str) -> bytes:
    """The sender address a DEVICE_ID names, as it appears in the frame's D7 status: 8 bytes
    (UID) when the value needs more than 2, else 2 (VID)."""
    value = int(device_id, 16)
    return value.to_bytes(8 if value > 0xFFFF else 2, "big")


def _records(
    client: redis.Redis, keys: StreamKeys, device_id: str, since: float
) -> Iterator[Record]:
    start = f"{int(since * 1000)}-0"
    needle = address_bytes(device_id)
    while True:
        reply: Any = client.eval_ro(_FIND_LUA, 1, keys.frames, start, _PAGE, needle)
        looked_at, last_id, found = reply
        for entry_id, fields in found:
            entry = dict(zip(fields[::2], fields[1::2], strict=True))
            outcome = decode_entry(as_text(entry_id), entry)
            # A modem's answer to a downlink command, or a frame that is no reading: not plotted.
            if isinstance(outcome, Record) and outcome.device_id == device_id:
                yield outcome
        if int(looked_at) < _PAGE:
            return
        start = "(" + as_text(last_id)


def read_history(
    client: redis.Redis, keys: StreamKeys, device_id: str, since: float
) -> list[Point]:
    """The records of the device's frames received since `since`, oldest first."""
    points = [_point(r) for r in _records(client, keys, device_id, since) if r.received_at >= since]
    points.sort(key=lambda p: p.at)
    return points
