"""`gatewayctl tail`: follow `{p}:records` live, one line per record.

A plain XREAD (no consumer group), so it never takes records away from the publisher. It starts
after the newest entry at the time it starts (what `$` means, but pinned to an id so nothing
added between two reads is missed).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final

from rich.markup import escape

from gateway_common.entries import EntryError, Record, decode_record
from gateway_common.streams import ENTRY_FIELD
from gateway_ctl.output import as_text, iso_time, print_json

if TYPE_CHECKING:
    import redis
    from rich.console import Console

    from gateway_common.streams import StreamKeys

__all__ = ["follow", "record_json", "start_id"]

BLOCK_MS: Final = 1000
"""One blocking read; below the client's socket timeout, and short for a prompt Ctrl-C."""


def start_id(client: redis.Redis, stream: str) -> str:
    """The id of the newest entry now (`0-0` when the stream is empty)."""
    newest: Any = client.xrevrange(stream, count=1)
    return as_text(newest[0][0]) if newest else "0-0"


def record_json(entry_id: str, record: Record) -> dict[str, Any]:
    return {
        "id": entry_id,
        "device_id": record.device_id,
        "kind": record.kind,
        "received_at": record.received_at,
        "link_budget": record.link_budget,
        "rx_level": record.rx_level,
        "frame_id": record.frame_id,
        "fields": record.fields,
    }


def _line(entry_id: str, record: Record) -> str:
    values = " ".join(f"{name}={value}" for name, value in record.fields.items())
    return (
        f"[dim]{iso_time(record.received_at)}[/dim] [bold]{record.device_id}[/bold] "
        f"[cyan]{record.kind}[/cyan] lb={record.link_budget} {escape(values)} [dim]{entry_id}[/dim]"
    )


def _show(entry_id: str, data: bytes | None, console: Console, as_json: bool) -> None:
    try:
        record = decode_record(data or b"")
    except EntryError as exc:
        if as_json:
            print_json({"id": entry_id, "error": str(exc)})
        else:
            console.print(f"[red]{entry_id}: unreadable record: {escape(str(exc))}[/red]")
        return
    if as_json:
        print_json(record_json(entry_id, record))
    else:
        console.print(_line(entry_id, record), highlight=False)


def follow(
    client: redis.Redis,
    keys: StreamKeys,
    console: Console,
    *,
    as_json: bool,
    count: int | None,
) -> int:
    """Print records as they are appended until `count` were shown (or Ctrl-C); how many."""
    last = start_id(client, keys.records)
    sys.stderr.write(f"following {keys.records} after {last} (Ctrl-C stops)\n")
    sys.stderr.flush()
    shown = 0
    while count is None or shown < count:
        want = None if count is None else count - shown
        reply: Any = client.xread({keys.records: last}, count=want, block=BLOCK_MS)
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                last = as_text(raw_id)
                _show(last, (fields or {}).get(ENTRY_FIELD), console, as_json)
                shown += 1
    return shown
