"""gatewayctl: inspect a running gateway (`gatewayctl status [--json]`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import ResponseError
from rich.console import Console

from gateway_common.redis_conn import REDIS_UNAVAILABLE, connect
from gateway_common.settings import load_settings
from gateway_common.streams import StreamKeys
from gateway_ctl.render import render_status
from gateway_ctl.settings import CtlSettings
from gateway_ctl.status import collect_status

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewayctl",
        description="Inspect a running gateway. Redis and the stream prefix come from "
        "GATEWAY_REDIS_URL and GATEWAY_STREAM_PREFIX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="streams, consumer groups, devices")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def redact(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"gatewayctl: {message}\n")
    raise SystemExit(1)


def status_command(settings: CtlSettings, as_json: bool) -> None:
    client = connect(settings.redis_url)
    try:
        status = collect_status(client, StreamKeys(settings.stream_prefix))
    except REDIS_UNAVAILABLE as exc:
        _fail(f"cannot reach Redis at {redact(settings.redis_url)}: {exc}")
    except ResponseError as exc:
        _fail(f"Redis refused a command: {exc}")
    finally:
        client.close()
    if as_json:
        print(json.dumps(status.as_json()))
    else:
        render_status(status, Console())


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = load_settings(CtlSettings)
    if args.command == "status":
        status_command(settings, as_json=args.json)
