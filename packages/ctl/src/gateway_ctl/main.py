"""gatewayctl: inspect and operate a running gateway.

Redis and the stream prefix come from GATEWAY_REDIS_URL and GATEWAY_STREAM_PREFIX, like the
services. Exit codes: 0 done, 1 Redis unreachable or the operation failed, 2 bad settings or
arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from gateway_common.commands import CommandState
from gateway_common.settings import load_settings
from gateway_common.streams import StreamKeys
from gateway_ctl import consumers, dead, downlink, replay, tail
from gateway_ctl.devices import collect_devices, render_devices
from gateway_ctl.errors import EXIT_FAILED, CtlError, redact, redis_session
from gateway_ctl.output import print_json
from gateway_ctl.render import render_status
from gateway_ctl.settings import CtlSettings
from gateway_ctl.status import collect_status, disk_status
from gateway_ctl.timespec import entry_id, epoch_ms, parse_duration, parse_time

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import redis

__all__ = ["main", "redact"]

DEFAULT_LIST_LIMIT = 100


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewayctl",
        description="Inspect and operate a running gateway. Redis and the stream prefix come "
        "from GATEWAY_REDIS_URL and GATEWAY_STREAM_PREFIX. Exit codes: 0 ok, 1 Redis "
        "unreachable or the operation failed, 2 bad settings or arguments.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="streams, consumer groups, devices")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    devices = commands.add_parser("devices", help="every device: seen, link budget, stale")
    devices.add_argument("--json", action="store_true", help="machine-readable output")

    cons = commands.add_parser("consumers", help="the consumers of the groups; prune stale ones")
    cons.add_argument("--json", action="store_true", help="machine-readable output")
    cons_sub = cons.add_subparsers(dest="action", metavar="ACTION")
    prune = cons_sub.add_parser(
        "prune", help="delete consumers with nothing pending, idle at least --idle"
    )
    prune.add_argument(
        "--idle",
        type=parse_duration,
        default=consumers.DEFAULT_PRUNE_IDLE_S,
        metavar="DURATION",
        help="least idle time: seconds, or 30m, 2h, 1d (default: 1h)",
    )
    prune.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    # SUPPRESS: `consumers --json prune` keeps the --json given before `prune`
    prune.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    dead_cmd = commands.add_parser("dead", help="inspect, requeue or drop dead letters")
    dead_sub = dead_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = dead_sub.add_parser("list", help="the oldest dead letters")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--limit", type=_positive, default=DEFAULT_LIST_LIMIT)
    show = dead_sub.add_parser("show", help="one dead letter, with its raw bytes")
    show.add_argument("id", type=entry_id)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    for action, text in (
        ("requeue", "send dead letters back to the stage that refused them"),
        ("drop", "delete dead letters"),
    ):
        sub = dead_sub.add_parser(action, help=text)
        sub.add_argument("ids", nargs="*", type=entry_id, metavar="ID")
        sub.add_argument("--all", action="store_true", help="every dead letter")
        sub.add_argument("--json", action="store_true", help="machine-readable output")

    rep = commands.add_parser("replay", help="decode archived frames again and republish them")
    rep.add_argument("--since", type=parse_time, required=True, help="ISO-8601 or epoch seconds")
    rep.add_argument("--until", type=parse_time, help="ISO-8601 or epoch seconds (default: now)")
    rep.add_argument("--device", help="only this DEVICE_ID")
    rep.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    rep.add_argument("--json", action="store_true", help="machine-readable summary")
    rep.add_argument("-v", "--verbose", action="store_true", help="list every replayed frame")

    config = commands.add_parser(
        "config", help="set a sensor's interval through the modem; list, show, cancel commands"
    )
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_set = config_sub.add_parser(
        "set", help="queue a command writing a device's EnergyConfigFile (interval, enabled)"
    )
    config_set.add_argument("device_id", metavar="DEVICE_ID")
    config_set.add_argument(
        "--interval-s",
        type=int,
        metavar="N",
        help="reporting interval, 10 ... 86400 s (default: the one the device reported)",
    )
    enable = config_set.add_mutually_exclusive_group()
    enable.add_argument("--enable", dest="enabled", action="store_true", default=None)
    enable.add_argument("--disable", dest="enabled", action="store_false")
    config_set.add_argument("--json", action="store_true", help="machine-readable output")
    config_list = config_sub.add_parser("list", help="the newest commands, with their states")
    config_list.add_argument("--limit", type=_positive, default=DEFAULT_LIST_LIMIT)
    config_list.add_argument("--json", action="store_true", help="machine-readable output")
    for action, text in (("show", "one command"), ("cancel", "withdraw a command still queued")):
        sub = config_sub.add_parser(action, help=text)
        sub.add_argument("id", metavar="ID")
        sub.add_argument("--json", action="store_true", help="machine-readable output")

    tail_cmd = commands.add_parser("tail", help="follow records live as they are published")
    tail_cmd.add_argument("--json", action="store_true", help="JSON lines")
    tail_cmd.add_argument("--count", type=_positive, help="stop after this many records")
    return parser


# ---- commands: each returns its exit code


def _status(settings: CtlSettings, args: argparse.Namespace) -> int:
    disk = None
    if settings.redis_data_dir is not None:
        disk = disk_status(settings.redis_data_dir, settings.disk_min_free_mb)
    try:
        with redis_session(settings.redis_url) as client:
            status = collect_status(
                client, StreamKeys(settings.stream_prefix), settings.device_interval_s
            )
    except CtlError:
        if disk is not None:  # why Redis may be away: it exits when its disk is full
            sys.stderr.write(f"gatewayctl: {disk.text}\n")
        raise
    status = dataclasses.replace(status, disk=disk)
    if args.json:
        print_json(status.as_json())
    else:
        render_status(status, Console())
    return 0


def _devices(settings: CtlSettings, args: argparse.Namespace) -> int:
    with redis_session(settings.redis_url) as client:
        rows = collect_devices(
            client, StreamKeys(settings.stream_prefix), settings.device_interval_s
        )
    if args.json:
        print_json({"devices": [row.as_json() for row in rows]})
    else:
        render_devices(rows, Console())
    return 0


def _dead_list(client: redis.Redis, keys: StreamKeys, args: argparse.Namespace) -> int:
    total, entries = dead.list_dead(client, keys, args.limit)
    if args.json:
        print_json({"length": total, "letters": [e.as_json() for e in entries]})
    else:
        dead.render_dead_list(total, entries, Console())
    return 0


def _dead_show(client: redis.Redis, keys: StreamKeys, args: argparse.Namespace) -> int:
    entry = dead.get_dead(client, keys, args.id)
    if args.json:
        print_json(entry.as_json(raw=True))
    else:
        dead.render_dead(entry, Console())
    return 0


def _dead_requeue(client: redis.Redis, keys: StreamKeys, args: argparse.Namespace) -> int:
    results = dead.requeue(client, keys, None if args.all else args.ids)
    done = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    if args.json:
        print_json(
            {"requeued": [r.as_json() for r in done], "failed": [r.as_json() for r in failed]}
        )
    else:
        console = Console()
        for r in done:
            console.print(f"requeued {r.dead_id} -> {r.stream} {r.new_id}")
        for r in failed:
            console.print(f"[red]not requeued {r.dead_id}: {escape(r.error or '')}[/red]")
    return EXIT_FAILED if failed else 0


def _dead_drop(client: redis.Redis, keys: StreamKeys, args: argparse.Namespace) -> int:
    count = dead.drop_all(client, keys) if args.all else dead.drop(client, keys, args.ids)
    if args.json:
        print_json({"dropped": count})
    else:
        Console().print(f"dropped {count} dead letter{'' if count == 1 else 's'}")
    missing = 0 if args.all else len(set(args.ids)) - count
    if missing:
        sys.stderr.write(f"gatewayctl: {missing} of the ids were not dead letters\n")
    return EXIT_FAILED if missing else 0


def _consumers(settings: CtlSettings, args: argparse.Namespace) -> int:
    with redis_session(settings.redis_url) as client:
        listed = consumers.list_consumers(client, StreamKeys(settings.stream_prefix))
        report = None
        if args.action == "prune":
            min_idle_ms = math.ceil(args.idle * 1000)
            report = consumers.prune(client, listed, min_idle_ms, dry_run=args.dry_run)
    if report is None:
        if args.json:
            print_json({"consumers": [c.as_json() for c in listed]})
        else:
            consumers.render_consumers(listed, Console())
    elif args.json:
        print_json(report.as_json())
    else:
        consumers.render_prune(report, Console())
    return 0


DEAD_ACTIONS: dict[str, Callable[[redis.Redis, StreamKeys, argparse.Namespace], int]] = {
    "list": _dead_list,
    "show": _dead_show,
    "requeue": _dead_requeue,
    "drop": _dead_drop,
}


def _dead(settings: CtlSettings, args: argparse.Namespace) -> int:
    with redis_session(settings.redis_url) as client:
        return DEAD_ACTIONS[args.action](client, StreamKeys(settings.stream_prefix), args)


def _replay(settings: CtlSettings, args: argparse.Namespace) -> int:
    with redis_session(settings.redis_url) as client:
        report = replay.replay(
            client,
            StreamKeys(settings.stream_prefix),
            since_ms=epoch_ms(args.since),
            until_ms=None if args.until is None else epoch_ms(args.until),
            device_id=args.device,
            dry_run=args.dry_run,
        )
    if args.json:
        print_json(report.as_json())
    else:
        replay.render_replay(report, Console(), verbose=args.verbose)
    return 0


def _config(settings: CtlSettings, args: argparse.Namespace) -> int:
    keys = StreamKeys(settings.stream_prefix)
    with redis_session(settings.redis_url) as client:
        if args.action == "list":
            total, commands = downlink.list_commands(client, keys, args.limit)
            if args.json:
                print_json(
                    {"total": total, "commands": [downlink.command_json(c) for c in commands]}
                )
            else:
                downlink.render_commands(total, commands, Console())
            return 0
        if args.action == "set":
            command = downlink.set_config(
                client,
                keys,
                device_id=args.device_id,
                interval_s=args.interval_s,
                enabled=args.enabled,
                timeout_s=settings.downlink_timeout_s,
                default_interval_s=settings.device_interval_s,
            )
        elif args.action == "show":
            command = downlink.show_command(client, keys, args.id)
        else:
            command = downlink.cancel_command(client, keys, args.id)
    if args.json:
        print_json(downlink.command_json(command))
    else:
        downlink.render_command(command, Console())
    rejected = command.state is CommandState.REJECTED and args.action == "set"
    return EXIT_FAILED if rejected else 0


def _tail(settings: CtlSettings, args: argparse.Namespace) -> int:
    try:
        with redis_session(settings.redis_url) as client:
            tail.follow(
                client,
                StreamKeys(settings.stream_prefix),
                Console(),
                as_json=args.json,
                count=args.count,
            )
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS: dict[str, Callable[[CtlSettings, argparse.Namespace], int]] = {
    "status": _status,
    "devices": _devices,
    "consumers": _consumers,
    "dead": _dead,
    "replay": _replay,
    "config": _config,
    "tail": _tail,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dead" and args.action in {"requeue", "drop"} and args.all == bool(args.ids):
        parser.error(f"dead {args.action}: give dead letter ids or --all, not both")
    if (
        args.command == "config"
        and args.action == "set"
        and args.interval_s is None
        and args.enabled is None
    ):
        parser.error("config set: give --interval-s, --enable or --disable")
    if args.command == "replay" and args.until is not None and args.until < args.since:
        parser.error("replay: --until is before --since")
    settings = load_settings(CtlSettings)
    try:
        code = COMMANDS[args.command](settings, args)
    except CtlError as exc:
        sys.stderr.write(f"gatewayctl: {exc}\n")
        raise SystemExit(EXIT_FAILED) from None
    if code:
        raise SystemExit(code)
