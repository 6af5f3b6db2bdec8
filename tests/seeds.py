"""The random seed of a fault or hostile-input test: fixed by default, replayable, explorable."""

from __future__ import annotations

import os
import random

DEFAULT_SEED = 20261127


def choose_seed(variable: str) -> int:
    """A test's random seed: fixed by default so CI is repeatable; `{variable}=N` replays one,
    `{variable}=random` explores a new one (the test prints it, to replay it)."""
    value = os.environ.get(variable, "").strip()
    if value == "random":
        return random.SystemRandom().randrange(10**6)
    return int(value) if value else DEFAULT_SEED
