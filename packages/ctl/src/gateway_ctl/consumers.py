"""`gatewayctl consumers [prune]`: the consumers of the gateway's groups, and removing stale ones.

A consumer name stays registered in its group after its process is gone (a decoder replica
scaled down or renamed); the live replicas claim its pending entries, but the name clutters the
listings. `prune` deletes such names with XGROUP DELCONSUMER, which also discards the pending
entries of the consumer it deletes: so a consumer is deleted only when it has nothing pending and
has been idle long enough, and that is checked and done in one Lua script per consumer. A consumer
that read something (or merely tried to, on Redis 7.2) between the listing and its script is
kept.

`idle` is what decides. Redis 7.2 counts it from the consumer's last *attempted* read or claim,
so a live replica waiting on an empty stream stays fresh; it also reports `inactive`, the time
since the last read or claim that returned something (shown when present, -1 if none yet).
Before 7.2, `idle` counts from the last successful one: a live consumer of a silent stream may
then look stale, and deleting it loses nothing (nothing pending; its next read recreates it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import ResponseError
from rich.markup import escape
from rich.table import Table

from gateway_ctl.output import as_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    import redis
    from rich.console import Console

    from gateway_common.streams import StreamKeys

__all__ = [
    "DEFAULT_PRUNE_IDLE_S",
    "Consumer",
    "PruneReport",
    "PruneResult",
    "Verdict",
    "consumer_from_info",
    "list_consumers",
    "prune",
    "render_consumers",
    "render_prune",
]

DEFAULT_PRUNE_IDLE_S: Final = 3600.0

# The one place a consumer is judged and deleted: nothing between the check and the delete.
# KEYS[1]: the stream. ARGV: group, consumer, least idle time (ms), '1' to delete ('0': judge).
# Returns {verdict, pending, idle ms}; verdict: 'removed', 'prunable' (judged only), 'pending',
# 'recent' (idle too short), 'gone' (no such consumer, group or stream any more).
_PRUNE_LUA: Final = """
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if consumers.err then
  if string.find(consumers.err, '^NOGROUP') or string.find(consumers.err, 'no such key') then
    return {'gone', 0, 0}
  end
  return redis.error_reply(consumers.err)
end
for _, consumer in ipairs(consumers) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['name'] == ARGV[2] then
    local idle = fields['idle']
    local held = #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
    if fields['pending'] > 0 or held > 0 then
      return {'pending', math.max(fields['pending'], held), idle}
    end
    if idle < tonumber(ARGV[3]) then
      return {'recent', 0, idle}
    end
    if ARGV[4] ~= '1' then
      return {'prunable', 0, idle}
    end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return {'removed', 0, idle}
  end
end
return {'gone', 0, 0}
"""


class Verdict(StrEnum):
    REMOVED = "removed"
    PRUNABLE = "prunable"
    """Would be removed (`--dry-run`)."""
    PENDING = "pending"
    """Kept: it holds pending entries, which deleting it would discard."""
    RECENT = "recent"
    """Kept: idle for less than the threshold."""
    GONE = "gone"
    """No longer there when its turn came (deleted meanwhile, with its group or stream)."""


@dataclass(frozen=True, slots=True)
class Consumer:
    stream: str
    group: str
    name: str
    pending: int
    idle_ms: int
    inactive_ms: int | None = None
    """Redis 7.2's time since the last read or claim that returned entries (-1: none yet);
    None when the server does not report it."""

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "group": self.group,
            "consumer": self.name,
            "pending": self.pending,
            "idle_ms": self.idle_ms,
            "inactive_ms": self.inactive_ms,
        }


@dataclass(frozen=True, slots=True)
class PruneResult:
    stream: str
    group: str
    consumer: str
    verdict: Verdict
    pending: int
    idle_ms: int

    def as_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "pending": self.pending,
            "idle_ms": self.idle_ms,
        }
        if self.verdict in {Verdict.PENDING, Verdict.RECENT}:
            obj["reason"] = "pending" if self.verdict is Verdict.PENDING else "idle"
        return obj


@dataclass(frozen=True, slots=True)
class PruneReport:
    dry_run: bool
    min_idle_ms: int
    results: tuple[PruneResult, ...]

    def having(self, *verdicts: Verdict) -> list[PruneResult]:
        return [r for r in self.results if r.verdict in verdicts]

    def as_json(self) -> dict[str, Any]:
        """Under `dry_run`, `removed` lists what would be removed; nothing was deleted."""
        return {
            "dry_run": self.dry_run,
            "idle_s": self.min_idle_ms / 1000,
            "removed": [r.as_json() for r in self.having(Verdict.REMOVED, Verdict.PRUNABLE)],
            "kept": [r.as_json() for r in self.having(Verdict.PENDING, Verdict.RECENT)],
            "gone": [r.as_json() for r in self.having(Verdict.GONE)],
        }


def consumer_from_info(stream: str, group: str, info: dict[str, Any]) -> Consumer:
    """One consumer from its XINFO CONSUMERS fields (`inactive` only from Redis 7.2 on)."""
    inactive = info.get("inactive")
    return Consumer(
        stream=stream,
        group=group,
        name=as_text(info["name"]),
        pending=int(info["pending"]),
        idle_ms=int(info["idle"]),
        inactive_ms=None if inactive is None else int(inactive),
    )


def _missing(exc: ResponseError) -> bool:
    """The stream or the group does not exist (any more)."""
    text = str(exc)
    return text.startswith("NOGROUP") or "no such key" in text.lower()


def list_consumers(client: redis.Redis, keys: StreamKeys) -> list[Consumer]:
    """Every consumer of every group of `{p}:frames` and `{p}:records`, in that order."""
    consumers: list[Consumer] = []
    for stream in (keys.frames, keys.records):
        try:
            groups: Any = client.xinfo_groups(stream)
        except ResponseError as exc:
            if _missing(exc):
                continue
            raise
        for group_info in groups:
            group = as_text(group_info["name"])
            try:
                infos: Any = client.xinfo_consumers(stream, group)
            except ResponseError as exc:
                if _missing(exc):
                    continue
                raise
            consumers.extend(consumer_from_info(stream, group, info) for info in infos)
    return consumers


def prune(
    client: redis.Redis, consumers: Iterable[Consumer], min_idle_ms: int, *, dry_run: bool
) -> PruneReport:
    """Delete those of `consumers` that, when their script runs, hold nothing pending and have
    been idle at least `min_idle_ms`; under `dry_run`, only judge them."""
    script = client.register_script(_PRUNE_LUA)
    results = []
    for consumer in consumers:
        reply: Any = script(
            keys=[consumer.stream],
            args=[consumer.group, consumer.name, min_idle_ms, "0" if dry_run else "1"],
        )
        verdict, pending, idle_ms = reply
        results.append(
            PruneResult(
                consumer.stream,
                consumer.group,
                consumer.name,
                Verdict(as_text(verdict)),
                int(pending),
                int(idle_ms),
            )
        )
    return PruneReport(dry_run, min_idle_ms, tuple(results))


# ---- for people


def duration_text(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _inactive_text(ms: int | None) -> str:
    if ms is None:
        return ""
    return "never read" if ms < 0 else duration_text(ms)


def render_consumers(consumers: list[Consumer], console: Console) -> None:
    if not consumers:
        console.print("no consumers")
        return
    with_inactive = any(c.inactive_ms is not None for c in consumers)
    table = Table(title=f"consumers ({len(consumers)})", title_justify="left")
    for column in ("stream", "group", "consumer"):
        table.add_column(column, overflow="fold")
    table.add_column("pending", justify="right")
    table.add_column("idle", justify="right")
    if with_inactive:
        table.add_column("inactive", justify="right")
    for c in consumers:
        cells = [escape(c.stream), escape(c.group), escape(c.name), str(c.pending)]
        cells.append(duration_text(c.idle_ms))
        if with_inactive:
            cells.append(_inactive_text(c.inactive_ms))
        table.add_row(*cells)
    console.print(table)


def _outcome(result: PruneResult, min_idle_ms: int) -> str:
    match result.verdict:
        case Verdict.REMOVED:
            return "[green]removed[/green]"
        case Verdict.PRUNABLE:
            return "[yellow]would remove[/yellow]"
        case Verdict.PENDING:
            return f"kept: {result.pending} pending"
        case Verdict.RECENT:
            return f"kept: idle {duration_text(result.idle_ms)} < {duration_text(min_idle_ms)}"
        case Verdict.GONE:
            return "[dim]already gone[/dim]"


def render_prune(report: PruneReport, console: Console) -> None:
    removed = len(report.having(Verdict.REMOVED, Verdict.PRUNABLE))
    kept = len(report.having(Verdict.PENDING, Verdict.RECENT))
    if report.results:
        table = Table(
            title="dry run: nothing deleted" if report.dry_run else None, title_justify="left"
        )
        for column in ("stream", "group", "consumer"):
            table.add_column(column, overflow="fold")
        table.add_column("pending", justify="right")
        table.add_column("idle", justify="right")
        table.add_column("result")
        for r in report.results:
            table.add_row(
                escape(r.stream),
                escape(r.group),
                escape(r.consumer),
                str(r.pending),
                duration_text(r.idle_ms),
                _outcome(r, report.min_idle_ms),
            )
        console.print(table)
    verb = "would remove" if report.dry_run else "removed"
    plural = "" if removed == 1 else "s"
    console.print(f"{verb} {removed} consumer{plural}, kept {kept}")
