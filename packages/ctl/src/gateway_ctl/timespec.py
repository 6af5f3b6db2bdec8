"""Times and ids on the command line: ISO-8601 or epoch seconds, and stream entry ids."""

from __future__ import annotations

import argparse
import math
import re
from datetime import UTC, datetime
from typing import Final

__all__ = ["entry_id", "epoch_ms", "parse_time"]

_ENTRY_ID: Final = re.compile(r"^\d{1,20}(-\d{1,20})?$")


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
