"""Times, durations and ids on the command line: ISO-8601 or epoch seconds, `30m`, entry ids."""

from __future__ import annotations

import argparse
import math
import re
from datetime import UTC, datetime
from typing import Final

__all__ = ["entry_id", "epoch_ms", "parse_duration", "parse_time"]

_ENTRY_ID: Final = re.compile(r"^\d{1,20}(-\d{1,20})?$")
_DURATION: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([smhd]?)")
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> float:
    """Epoch seconds from `1735689600.5` or ISO-8601 (`2025-01-01T00:00:00Z`; naive means UTC)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"not a time: {text!r}")
        return value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO-8601 such as 2025-01-31T08:00:00Z, or epoch seconds)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def epoch_ms(epoch_s: float) -> int:
    """The millisecond part of the stream entry ids at or after `epoch_s`."""
    return math.floor(epoch_s * 1000)


def entry_id(text: str) -> str:
    """A stream entry id such as `1735689600000-0` (argparse type)."""
    if not _ENTRY_ID.match(text):
        raise argparse.ArgumentTypeError(f"not a stream entry id: {text!r}")
    return text


def parse_duration(text: str) -> float:
    """Seconds from `90`, `0.5`, `45s`, `30m`, `2h` or `1d` (argparse type; never negative)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (seconds, or a number with s, m, h or d: 30m, 2h, 1d)"
        )
    seconds = float(match[1]) * _UNIT_S[match[2]]
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (too long)")
    return seconds
