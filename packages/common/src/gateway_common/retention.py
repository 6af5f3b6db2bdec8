"""Stream retention: trim a stream only behind what every consumer group has acknowledged.

Redis 7.0 has no "trim acknowledged entries" option, so the bound is computed, and computed in
the same Lua script that trims: no consumer group can gain an older pending entry between the
computation and the XTRIM. For each consumer group of the stream (XINFO GROUPS) the safe bound
is the lower of

- its oldest pending entry (XPENDING summary): delivered, not acknowledged yet, and
- the id right after its last-delivered-id: entries after it were never delivered to it.

The stream's bound is the lowest over its groups, lowered further to the age cutoff (the Redis
server's time minus the retention; an entry id starts with the server's millisecond time when it
was added), and `XTRIM MINID` (exact) deletes only the entries strictly below it. So trimming
never deletes an entry that any group still has to process, and keeps every entry younger than
the retention whatever its state: the raw frames stay available for re-decoding.

A stream with no consumer group at all (the dead letters) may also have a ceiling on its
length: beyond `max_entries`, its oldest entries go too, whatever their age (a neighbouring
DASH7 network's frames, dead-lettered one a second for a month, would otherwise fill Redis).

A stream whose expected consumer groups do not all exist yet (a decoder that has not started,
say) is not trimmed at all: its entries wait for a group that will be created starting at 0. A
stream that needs no group (the dead letters, which nobody consumes) is trimmed by age (and to
its length ceiling, above), unless a group was created on it anyway, which is then respected
like any other. The flip side: an abandoned consumer group (a tool's group nobody reads any
more) holds trimming back for good, and the stream grows until it is destroyed (`XGROUP
DESTROY`); `stream_not_trimmed` (debug) and `limited_by` in `stream_trimmed` name the group that
holds it back.

Approximate trimming (`MINID ~`) would be safe too (it only ever keeps more), but it removes
whole macro nodes only; exact trimming frees whole nodes just as cheaply and marks the entries
of the last, partial node deleted, so the count returned is exactly what is gone. It is allowed
when Redis is over `maxmemory` (XTRIM is not refused for memory), so it frees a full Redis.

`StreamRetention.run_due()` is called from a service's loop; it trims every `interval_s` and
never raises: a Redis error is logged and counted, and the next turn tries again. Several
replicas may run it: trimming is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import redis
from prometheus_client import CollectorRegistry, Counter

from gateway_common.logs import get_logger
from gateway_common.redis_conn import REDIS_UNAVAILABLE

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

__all__ = ["RetentionRule", "StreamRetention", "TrimResult", "trim_stream"]

log = get_logger(__name__)

# KEYS[1]: the stream. ARGV[1]: retention in ms; ARGV[2]: the most entries to keep when the
# stream has no group (0: no limit); ARGV[3..]: groups that must exist.
# Returns {trimmed, minid or false, reason}. Ids are compared as decimal strings (length first),
# so 64-bit parts never go through Lua's floating point numbers.
_TRIM_LUA: Final = """
local function dec_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function id_less(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if ams ~= bms then return dec_less(ams, bms) end
  return dec_less(aseq, bseq)
end
local function dec_incr(s)
  local digits = {}
  for i = 1, #s do digits[i] = string.byte(s, i) - 48 end
  local i = #digits
  while i >= 1 do
    if digits[i] < 9 then digits[i] = digits[i] + 1; break end
    digits[i] = 0
    i = i - 1
  end
  local out = table.concat(digits)
  if i == 0 then out = '1' .. out end
  return out
end
local function next_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if seq == '18446744073709551615' then return dec_incr(ms) .. '-0' end
  return ms .. '-' .. dec_incr(seq)
end

if redis.call('EXISTS', KEYS[1]) == 0 then return {0, false, 'no stream'} end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local cutoff_ms = now_ms - tonumber(ARGV[1])
if cutoff_ms <= 0 then return {0, false, 'retention'} end
local bound = string.format('%d-0', cutoff_ms)
local reason = 'retention'

local present = {}
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, group in ipairs(groups) do
  local name, last = nil, nil
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  present[name] = true
  local safe = next_id(last)
  local pending = redis.call('XPENDING', KEYS[1], name)
  if pending[2] and id_less(pending[2], safe) then safe = pending[2] end
  if id_less(safe, bound) then
    bound = safe
    reason = 'group ' .. name
  end
end
for i = 3, #ARGV do
  if not present[ARGV[i]] then return {0, false, 'missing group ' .. ARGV[i]} end
end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', bound)
local max_entries = tonumber(ARGV[2])
if #groups == 0 and max_entries > 0 and redis.call('XLEN', KEYS[1]) > max_entries then
  trimmed = trimmed + redis.call('XTRIM', KEYS[1], 'MAXLEN', max_entries)
  reason = 'max entries'
end
return {trimmed, bound, reason}
"""


@dataclass(frozen=True, slots=True)
class TrimResult:
    trimmed: int
    """Entries deleted."""
    min_id: str | None
    """The bound used: every entry below it was deleted; None when nothing could be trimmed."""
    limited_by: str
    """What set the bound: `retention`, `group <name>`, `missing group <name>`, `no stream`."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _TrimScript:
    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_TRIM_LUA)

    def __call__(
        self,
        stream: str,
        retention_ms: int,
        required_groups: Collection[str],
        max_entries: int = 0,
    ) -> TrimResult:
        args: list[int | str] = [retention_ms, max_entries, *required_groups]
        reply: Any = self._script(keys=[stream], args=args)
        trimmed, min_id, reason = reply
        return TrimResult(int(trimmed), _text(min_id) if min_id else None, _text(reason))


def trim_stream(
    client: redis.Redis,
    stream: str,
    *,
    retention_ms: int,
    required_groups: Collection[str],
    max_entries: int = 0,
) -> TrimResult:
    """Delete the entries of `stream` older than `retention_ms` that every group acknowledged.

    Nothing is trimmed unless every group in `required_groups` exists; with no required group,
    a stream without groups is trimmed by age, then to its newest `max_entries` (0: no limit).
    Raises redis errors as they come.
    """
    if retention_ms < 0 or max_entries < 0:
        raise ValueError("retention_ms and max_entries must not be negative")
    return _TrimScript(client)(stream, retention_ms, required_groups, max_entries)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    stream: str
    retention_s: float
    """Entries younger than this are kept, acknowledged or not."""
    required_groups: tuple[str, ...]
    """Consumer groups that must exist before anything is trimmed (empty: trim by age only)."""
    max_entries: int = 0
    """For a stream with no consumer group: the newest this many are kept (0: no limit)."""


class StreamRetention:
    """Trims some streams every `interval_s`, from a service loop; never raises."""

    def __init__(
        self,
        client: redis.Redis,
        rules: Sequence[RetentionRule],
        *,
        interval_s: float,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = _TrimScript(client)
        self._rules = tuple(rules)
        self._interval_s = interval_s
        self._clock = clock
        self._next = clock()
        registry = registry if registry is not None else CollectorRegistry()
        self._trimmed = Counter(
            "gateway_stream_trimmed_entries_total",
            "Stream entries deleted by retention (acknowledged by every group, and old enough; "
            "or beyond the length ceiling of a stream without groups)",
            ["stream"],
            registry=registry,
        )
        self._errors = Counter(
            "gateway_stream_trim_errors_total",
            "Trimming attempts that failed on a Redis error (retried at the next interval)",
            ["stream"],
            registry=registry,
        )
        for rule in self._rules:
            self._trimmed.labels(stream=rule.stream)
            self._errors.labels(stream=rule.stream)

    def run_due(self) -> None:
        """Trim if the interval has passed since the last time (the first call trims)."""
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval_s
        self.run_once()

    def run_once(self) -> dict[str, int]:
        """Trim every stream now; return the entries trimmed per stream (failed ones absent).

        An error reply fails one stream only; an unreachable or silent Redis ends the pass (the
        next stream would wait out the same socket timeout): the streams left count as failed.
        """
        done: dict[str, int] = {}
        for index, rule in enumerate(self._rules):
            try:
                result = self._trim(
                    rule.stream,
                    round(rule.retention_s * 1000),
                    rule.required_groups,
                    rule.max_entries,
                )
            except redis.RedisError as exc:
                unreachable = isinstance(exc, REDIS_UNAVAILABLE)
                left = self._rules[index:] if unreachable else (rule,)
                for failed in left:
                    self._errors.labels(stream=failed.stream).inc()
                log.warning(
                    "stream_trim_failed",
                    stream=rule.stream,
                    error=str(exc)[:200],
                    error_type=type(exc).__name__,
                    not_tried=[r.stream for r in left[1:]],
                )
                if unreachable:
                    break
                continue
            done[rule.stream] = result.trimmed
            if result.trimmed:
                self._trimmed.labels(stream=rule.stream).inc(result.trimmed)
                log.info(
                    "stream_trimmed",
                    stream=rule.stream,
                    trimmed=result.trimmed,
                    min_id=result.min_id,
                    limited_by=result.limited_by,
                    retention_s=rule.retention_s,
                )
            else:
                log.debug("stream_not_trimmed", stream=rule.stream, limited_by=result.limited_by)
        return done
