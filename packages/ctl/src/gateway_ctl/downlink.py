"""`gatewayctl config`: set a sensor's interval through the modem, and follow every command.

`config set` is a command source like a DCMD: the request is validated against the device
registry and stored queued (ingest sends it) or rejected with its reason
(gateway_common.command_requests). `config list|show` read the commands' states,
`config cancel` withdraws a command still queued (one the modem has cannot be called back).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from gateway_common.command_requests import request_command
from gateway_common.command_store import CommandStore
from gateway_common.commands import Cancelled, Command, CommandState, cancel_refusal
from gateway_ctl.errors import CtlError
from gateway_ctl.output import iso_time

if TYPE_CHECKING:
    import redis
    from rich.console import Console

    from gateway_common.streams import StreamKeys

__all__ = [
    "SOURCE",
    "cancel_command",
    "command_json",
    "list_commands",
    "render_command",
    "render_commands",
    "set_config",
    "show_command",
]

SOURCE = "gatewayctl"

_STYLE = {
    CommandState.QUEUED: "cyan",
    CommandState.SENT: "blue",
    CommandState.ACKNOWLEDGED: "blue",
    CommandState.CONFIRMED: "green",
    CommandState.FAILED: "bold red",
    CommandState.EXPIRED: "red",
    CommandState.REJECTED: "yellow",
}


def command_json(command: Command) -> dict[str, Any]:
    """Every field of a command, for `--json`."""
    return {
        "id": command.id,
        "device_id": command.device_id,
        "state": command.state.value,
        "interval_s": command.interval_s,
        "enabled": command.enabled,
        "reason": command.reason,
        "source": command.source,
        "created_at": command.created_at,
        "updated_at": command.updated_at,
        "deadline": command.deadline,
        "timeout_s": command.timeout_s,
        "tag": command.tag,
        "sent_at": command.sent_at,
        "attempts": command.attempts,
        "responses": command.responses,
        "acknowledged_at": command.acknowledged_at,
        "ended_at": command.ended_at,
        "entry_id": command.entry_id,
    }


def set_config(
    client: redis.Redis,
    keys: StreamKeys,
    *,
    device_id: str,
    interval_s: int | None,
    enabled: bool | None,
    timeout_s: float | None,
    default_interval_s: float,
) -> Command:
    """Validate and store one request (queued, or rejected with its reason)."""
    return request_command(
        CommandStore(client, keys),
        client,
        device_id=device_id,
        interval_s=interval_s,
        enabled=enabled,
        source=SOURCE,
        now=time.time(),
        timeout_s=timeout_s,
        default_interval_s=default_interval_s,
    )


def list_commands(client: redis.Redis, keys: StreamKeys, limit: int) -> tuple[int, list[Command]]:
    """(commands stored, the newest `limit` of them)."""
    return CommandStore(client, keys).listing(limit)


def show_command(client: redis.Redis, keys: StreamKeys, command_id: str) -> Command:
    command = CommandStore(client, keys).get(command_id)
    if command is None:
        raise CtlError(f"no command {command_id}")
    return command


def cancel_command(client: redis.Redis, keys: StreamKeys, command_id: str) -> Command:
    """Withdraw a queued command: it ends `failed`, reason `cancelled by an operator`."""
    store = CommandStore(client, keys)
    command = store.get(command_id)
    if command is None:
        raise CtlError(f"no command {command_id}")
    done = store.apply(command_id, Cancelled(time.time()))
    if done is None:
        now = store.get(command_id) or command
        raise CtlError(cancel_refusal(now) or f"command {command_id} cannot be cancelled")
    return done.after


def _values(command: Command) -> str:
    if command.state is CommandState.REJECTED and not command.interval_s:
        return "-"
    return f"{command.interval_s} s, {'enabled' if command.enabled else 'disabled'}"


def render_commands(total: int, commands: list[Command], console: Console) -> None:
    shown = f"newest {len(commands)} of {total}" if len(commands) < total else str(total)
    table = Table(title=f"commands ({shown})", title_justify="left")
    for column in ("id", "device", "values", "state", "source", "created", "tries", "reason"):
        table.add_column(column, justify="right" if column in ("id", "tries") else "left")
    for command in commands:
        style = _STYLE[command.state]
        table.add_row(
            command.id,
            escape(command.device_id),
            _values(command),
            f"[{style}]{command.state}[/{style}]",
            command.source,
            iso_time(command.created_at, "seconds"),
            str(command.attempts),
            escape(command.reason),
        )
    console.print(table)


def render_command(command: Command, console: Console) -> None:
    style = _STYLE[command.state]
    console.print(f"command [bold]{command.id}[/bold]: [{style}]{command.state}[/{style}]")
    rows = (
        ("device", escape(command.device_id)),
        ("values", _values(command)),
        ("reason", escape(command.reason) or "-"),
        ("source", command.source),
        ("created", iso_time(command.created_at)),
        ("sent", iso_time(command.sent_at)),
        ("acknowledged", iso_time(command.acknowledged_at)),
        ("ended", iso_time(command.ended_at)),
        ("deadline", iso_time(command.deadline)),
        ("writes to the modem", str(command.attempts)),
        ("tag", "-" if command.tag is None else f"0x{command.tag:02X}"),
    )
    for name, value in rows:
        console.print(f"  {name:<20} {value}")
