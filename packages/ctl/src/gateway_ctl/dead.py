"""`gatewayctl dead list|show|requeue|drop`: inspect the dead letters, send them back, drop them.

Requeueing puts a dead letter back where its stage reads from: a decoder-stage letter (raw ALP
and receive time) becomes a frame entry on `{p}:frames` again, a publisher-stage letter (the
record entry's bytes) goes back to `{p}:records`. The append and the deletion of the letter are
one Lua script, which appends only when the letter still exists: a letter is never both requeued
and kept, nor lost, even when two operators requeue it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from rich.markup import escape
from rich.table import Table

from gateway_common.entries import (
    DeadLetter,
    EntryError,
    FrameEntry,
    decode_dead_letter,
    decode_record,
    encode,
)
from gateway_common.streams import ENTRY_FIELD
from gateway_ctl.errors import CtlError
from gateway_ctl.output import as_text, iso_time

if TYPE_CHECKING:
    import redis
    from rich.console import Console

    from gateway_common.streams import StreamKeys

__all__ = [
    "DeadEntry",
    "RequeueResult",
    "drop",
    "drop_all",
    "get_dead",
    "list_dead",
    "render_dead",
    "render_dead_list",
    "requeue",
    "requeue_target",
]

DECODER_STAGE: Final = "decoder"
PUBLISHER_STAGE: Final = "publisher"
_PAGE: Final = 500

# KEYS: dead, target. ARGV: dead letter id, entry field, entry bytes.
# Returns the new entry's id, or nil when the letter no longer exists (nothing appended).
_REQUEUE_LUA: Final = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return false
end
local new_id = redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[1])
return new_id
"""


@dataclass(frozen=True, slots=True)
class DeadEntry:
    entry_id: str
    letter: DeadLetter | None
    error: str | None = None
    """Why the entry is not a readable dead letter (then `letter` is None)."""

    def as_json(self, *, raw: bool = False) -> dict[str, Any]:
        letter = self.letter
        if letter is None:
            return {"id": self.entry_id, "error": self.error}
        obj: dict[str, Any] = {
            "id": self.entry_id,
            "stage": letter.stage,
            "reason": letter.reason,
            "source_stream": letter.source_stream,
            "source_id": letter.source_id,
            "failed_at": letter.failed_at,
            "received_at": letter.received_at,
            "attempts": letter.attempts,
            "detail": letter.detail,
            "raw_bytes": len(letter.raw),
        }
        if raw:
            obj["raw_hex"] = letter.raw.hex()
        return obj


@dataclass(frozen=True, slots=True)
class RequeueResult:
    dead_id: str
    stream: str | None
    new_id: str | None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"id": self.dead_id, "error": self.error}
        return {"id": self.dead_id, "stream": self.stream, "new_id": self.new_id}


def _entry(entry_id: Any, fields: Any) -> DeadEntry:
    data = (fields or {}).get(ENTRY_FIELD)
    entry_id = as_text(entry_id)
    if data is None:
        return DeadEntry(entry_id, None, "entry has no field d")
    try:
        return DeadEntry(entry_id, decode_dead_letter(data))
    except EntryError as exc:
        return DeadEntry(entry_id, None, str(exc))


def list_dead(
    client: redis.Redis, keys: StreamKeys, limit: int, *, newest: bool = False
) -> tuple[int, list[DeadEntry]]:
    """(total number of dead letters, the oldest `limit` of them, or the newest first)."""
    raw: Any = (
        client.xrevrange(keys.dead, count=limit)
        if newest
        else client.xrange(keys.dead, count=limit)
    )
    return int(client.xlen(keys.dead)), [_entry(i, f) for i, f in raw]


def get_dead(client: redis.Redis, keys: StreamKeys, entry_id: str) -> DeadEntry:
    raw: Any = client.xrange(keys.dead, min=entry_id, max=entry_id)
    if not raw:
        raise CtlError(f"no dead letter {entry_id} in {keys.dead}")
    return _entry(*raw[0])


def requeue_target(keys: StreamKeys, letter: DeadLetter) -> tuple[str, bytes]:
    """(stream, entry bytes) that puts the letter back before the stage that refused it."""
    if letter.stage == DECODER_STAGE:
        if letter.received_at is None or not letter.raw:
            raise CtlError("the frame entry itself was unreadable: there is no frame to requeue")
        counter = letter.detail.get("counter", 0)
        if not isinstance(counter, int) or not 0 <= counter <= 255:
            counter = 0
        return keys.frames, encode(FrameEntry(letter.raw, letter.received_at, counter))
    if letter.stage == PUBLISHER_STAGE:
        if not letter.raw:
            raise CtlError("the record entry was empty: there is no record to requeue")
        try:
            decode_record(letter.raw)
        except EntryError as exc:
            raise CtlError(f"the record entry is unreadable ({exc}): not requeued") from exc
        return keys.records, letter.raw
    raise CtlError(f"unknown stage {letter.stage!r}: cannot tell where to requeue it")


def _requeue_one(script: Any, keys: StreamKeys, entry: DeadEntry) -> RequeueResult:
    if entry.letter is None:
        return RequeueResult(entry.entry_id, None, None, f"unreadable dead letter: {entry.error}")
    try:
        stream, data = requeue_target(keys, entry.letter)
    except CtlError as exc:
        return RequeueResult(entry.entry_id, None, None, str(exc))
    new_id: Any = script(keys=[keys.dead, stream], args=[entry.entry_id, ENTRY_FIELD, data])
    if new_id is None:
        return RequeueResult(entry.entry_id, None, None, "already gone (requeued or dropped)")
    return RequeueResult(entry.entry_id, stream, as_text(new_id))


def requeue(
    client: redis.Redis, keys: StreamKeys, entry_ids: list[str] | None
) -> list[RequeueResult]:
    """Requeue these dead letters (None: all of them), each atomically."""
    script = client.register_script(_REQUEUE_LUA)
    if entry_ids is not None:
        results = []
        for entry_id in entry_ids:
            try:
                entry = get_dead(client, keys, entry_id)
            except CtlError as exc:
                results.append(RequeueResult(entry_id, None, None, str(exc)))
                continue
            results.append(_requeue_one(script, keys, entry))
        return results
    results = []
    start = "-"
    while True:
        raw: Any = client.xrange(keys.dead, min=start, max="+", count=_PAGE)
        for entry_id, fields in raw:
            results.append(_requeue_one(script, keys, _entry(entry_id, fields)))
        if len(raw) < _PAGE:
            return results
        start = "(" + as_text(raw[-1][0])


def drop(client: redis.Redis, keys: StreamKeys, entry_ids: list[str]) -> int:
    """Delete these dead letters; the number that existed."""
    return int(client.xdel(keys.dead, *entry_ids))


def drop_all(client: redis.Redis, keys: StreamKeys) -> int:
    """Delete every dead letter (the stream stays, empty); how many there were."""
    return int(client.xtrim(keys.dead, maxlen=0, approximate=False))


# ---- for people


def render_dead_list(total: int, entries: list[DeadEntry], console: Console) -> None:
    table = Table(title=f"dead letters ({total})", title_justify="left")
    for column in ("id", "failed at", "stage", "reason", "source", "attempts"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        letter = entry.letter
        if letter is None:
            table.add_row(entry.entry_id, "", "", f"[red]{escape(entry.error or '')}[/red]")
            continue
        device = letter.detail.get("device_id")
        source = letter.source_id + (f" ({device})" if isinstance(device, str) else "")
        table.add_row(
            entry.entry_id,
            iso_time(letter.failed_at),
            letter.stage,
            escape(letter.reason),
            escape(source),
            str(letter.attempts),
        )
    console.print(table)
    if total > len(entries):
        console.print(f"[dim]{total - len(entries)} more (use --limit)[/dim]")


def render_dead(entry: DeadEntry, console: Console) -> None:
    letter = entry.letter
    if letter is None:
        console.print(f"{entry.entry_id}: [red]{escape(entry.error or '')}[/red]")
        return
    rows = (
        ("id", entry.entry_id),
        ("stage", letter.stage),
        ("reason", letter.reason),
        ("source", f"{letter.source_stream} {letter.source_id}"),
        ("received at", iso_time(letter.received_at)),
        ("failed at", iso_time(letter.failed_at)),
        ("attempts", str(letter.attempts)),
        *((f"detail.{k}", str(v)) for k, v in sorted(letter.detail.items())),
        (f"raw ({len(letter.raw)} bytes)", letter.raw.hex(" ")),
    )
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)
