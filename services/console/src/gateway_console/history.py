"""One device's readings over a window, for the device page's plots: the one module that knows
where the history comes from.

Now: `{p}:records`, which the publisher trims to one day (`GATEWAY_RECORDS_RETENTION_S`), read
from the window's start (no consumer group). A day of 500 devices is some 72,000 entries, so the
search for one device's runs inside Redis: a read-only script (EVAL_RO, XRANGE only) looks at
`_PAGE` entries per call and returns only those whose bytes contain the device id, which are then
decoded here. Each call holds Redis for a few milliseconds; none writes.

The frames archive `{p}:frames` keeps 7 days, but its entries are raw ALP that must be decoded,
and that codec belongs to the decoder service (a service never imports another): once it lives
in a shared package, `_records` reads `{p}:frames` and decodes each frame (the script finds the
device's UID bytes there), and `MAX_WINDOW_S` becomes `GATEWAY_FRAMES_RETENTION_S` (the page
then offers the longer windows by itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway_common.entries import EntryError, Record, decode_record
from gateway_common.streams import ENTRY_FIELD
from gateway_ctl.output import as_text

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

    from gateway_common.streams import StreamKeys

__all__ = ["MAX_WINDOW_S", "SOURCE", "Point", "Triple", "read_history"]

#: What the plots are drawn from, as the page names it, and how far back that reaches.
SOURCE: Final = "records stream (kept 1 day)"
MAX_WINDOW_S: Final = 86_400.0
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


def _records(
    client: redis.Redis, keys: StreamKeys, device_id: str, since: float
) -> Iterator[Record]:
    start = f"{int(since * 1000)}-0"
    while True:
        reply: Any = client.eval_ro(_FIND_LUA, 1, keys.records, start, _PAGE, device_id)
        looked_at, last_id, found = reply
        for _entry_id, fields in found:
            data = dict(zip(fields[::2], fields[1::2], strict=True)).get(ENTRY_FIELD)
            try:
                record = decode_record(data or b"")
            except EntryError:
                continue
            if record.device_id == device_id:
                yield record
        if int(looked_at) < _PAGE:
            return
        start = "(" + as_text(last_id)


def read_history(
    client: redis.Redis, keys: StreamKeys, device_id: str, since: float
) -> list[Point]:
    """The device's records received since `since`, oldest first."""
    points = [_point(r) for r in _records(client, keys, device_id, since) if r.received_at >= since]
    points.sort(key=lambda p: p.at)
    return points
