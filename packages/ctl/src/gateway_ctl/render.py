"""Rich tables of a `GatewayStatus`, for people at a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP

if TYPE_CHECKING:
    from rich.console import Console

    from gateway_ctl.status import GatewayStatus, GroupStatus

__all__ = ["render_status"]

NOT_STARTED = "[dim]no group yet[/dim]"


def _count(value: int | None) -> str:
    return "[dim]—[/dim]" if value is None else str(value)


def _streams_table(status: GatewayStatus) -> Table:
    table = Table(title=f"gateway [bold]{status.prefix}[/bold]", title_justify="left")
    table.add_column("stream")
    table.add_column("length", justify="right")
    table.add_column("group")
    table.add_column("pending", justify="right")
    table.add_column("lag", justify="right")
    rows: tuple[tuple[str, int, str, GroupStatus | None], ...] = (
        ("frames", status.frames_length, DECODER_GROUP, status.decoder),
        ("records", status.records_length, PUBLISHER_GROUP, status.publisher),
    )
    for stream, length, group_name, group in rows:
        if group is None:
            table.add_row(stream, str(length), f"{group_name} {NOT_STARTED}", "", "")
        else:
            table.add_row(stream, str(length), group_name, str(group.pending), _count(group.lag))
    dead_style = "bold red" if status.dead_length else ""
    table.add_row("dead", f"[{dead_style}]{status.dead_length}[/]" if dead_style else "0", "")
    return table


def _consumers_table(status: GatewayStatus) -> Table:
    table = Table(title="consumers", title_justify="left")
    table.add_column("group")
    table.add_column("consumer")
    table.add_column("pending", justify="right")
    table.add_column("idle", justify="right")
    for group in (status.decoder, status.publisher):
        if group is None:
            continue
        if not group.consumers:
            table.add_row(group.name, "[dim]none[/dim]", "", "")
        for consumer in group.consumers:
            table.add_row(
                group.name, consumer.name, str(consumer.pending), f"{consumer.idle_ms / 1000:.1f} s"
            )
    return table


def render_status(status: GatewayStatus, console: Console) -> None:
    console.print(_streams_table(status))
    console.print(_consumers_table(status))
    age = status.oldest_unpublished_age_s
    stale = f" ([bold red]{status.stale_devices} stale[/bold red])" if status.stale_devices else ""
    console.print(f"devices: {status.devices}{stale}")
    console.print("oldest unpublished record: " + ("none" if age is None else f"{age:.1f} s old"))
    counts = ", ".join(f"{n} {state}" for state, n in status.commands.items() if n)
    console.print(f"downlink commands: {counts or 'none'}")
    if not status.redis_problems:
        console.print("redis: ok")
    for problem in status.redis_problems:
        console.print(f"redis: [bold red]{escape(problem)}[/bold red]")
    if status.disk is not None:
        text = escape(status.disk.text)
        console.print(f"disk: [bold red]{text}[/bold red]" if status.disk.low else f"disk: {text}")
