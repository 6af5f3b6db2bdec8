"""The bench's command line (`make bench` runs it without options)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

DESCRIPTION = "`make bench`: what the gateway does on this machine, measured in one run."


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool
    frames: int
    latency_frames: int
    backlog_frames: int
    d7a_seconds: float
    redis_aof: bool
    keep_logs: bool
    py_spy: str | None
    broker_inflight: int | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="gateway-bench", description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="a shorter run (smaller counts)")
    parser.add_argument("--frames", type=int, metavar="N", help="end-to-end burst (20000)")
    parser.add_argument("--latency-frames", type=int, metavar="N", help="paced frames (1500)")
    parser.add_argument("--backlog", type=int, metavar="N", help="backlog entries (100000)")
    parser.add_argument(
        "--redis-aof",
        action="store_true",
        help="private Redis with AOF on (appendfsync everysec: docker-compose.yml's cheaper "
        "option; it defaults to always)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy binary: profile the services during the burst and the backlog drain",
    )
    parser.add_argument(
        "--broker-inflight",
        type=int,
        metavar="N",
        help="mosquitto max_inflight_messages, its MQTT v5 Receive Maximum (default: "
        "mosquitto's own, 20)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    options = Options(
        quick=quick,
        frames=args.frames or (3000 if quick else 20000),
        latency_frames=args.latency_frames or (300 if quick else 1500),
        backlog_frames=args.backlog or (10000 if quick else 100000),
        d7a_seconds=1.0 if quick else 3.0,
        redis_aof=bool(args.redis_aof),
        keep_logs=bool(args.keep_logs),
        py_spy=args.py_spy,
        broker_inflight=args.broker_inflight,
    )
    if min(options.frames, options.latency_frames, options.backlog_frames) <= 0:
        parser.error("counts must be positive")
    return options
