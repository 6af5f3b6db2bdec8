"""The random seed and the scale of a fault or hostile-input test: fixed by default,
replayable, explorable.

`make test` runs every fault scenario at its short scale; `make chaos` sets
GATEWAY_CHAOS_SCALE=full (and a fixed GATEWAY_CHAOS_SEED) and runs the tests marked `chaos` at
their full scale.
"""

from __future__ import annotations

import os
import random

DEFAULT_SEED = 20261127
SCALE_VARIABLE = "GATEWAY_CHAOS_SCALE"
SCALES = ("short", "full")


def choose_seed(variable: str) -> int:
    """A test's random seed: fixed by default so CI is repeatable; `{variable}=N` replays one,
    `{variable}=random` explores a new one (the test prints it, to replay it)."""
    value = os.environ.get(variable, "").strip()
    if value == "random":
        return random.SystemRandom().randrange(10**6)
    return int(value) if value else DEFAULT_SEED


def full_scale() -> bool:
    """True under `make chaos` (GATEWAY_CHAOS_SCALE=full), False for `make test`'s short runs."""
    value = os.environ.get(SCALE_VARIABLE, "short").strip() or "short"
    if value not in SCALES:
        raise ValueError(f"{SCALE_VARIABLE} must be one of {', '.join(SCALES)} (got {value!r})")
    return value == "full"


def scaled(short: int, full: int) -> int:
    """`short` for `make test`, `full` for `make chaos`."""
    return full if full_scale() else short
