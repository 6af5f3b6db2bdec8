"""The decoder's settings, from the environment only (GATEWAY_* variables)."""

from __future__ import annotations

from pydantic import Field

from gateway_common.settings import CommonSettings, default_consumer_name

__all__ = ["DecoderSettings"]


class DecoderSettings(CommonSettings):
    consumer_name: str = Field(default_factory=default_consumer_name, min_length=1, max_length=200)
    """Stable consumer name in the `decoder` group; a restarted replica finds its pending frames."""
    batch_size: int = Field(100, ge=1, le=10_000)
    """Frames per XREADGROUP / XAUTOCLAIM, and handoffs per round trip."""
    block_ms: int = Field(1000, ge=1, le=5000)
    """How long one read waits for new frames (below the client's 10 s socket timeout)."""
    claim_idle_ms: int = Field(30_000, ge=1)
    """A frame pending this long on any consumer is claimed (its replica is presumed gone)."""
    claim_interval_ms: int = Field(5000, ge=1)
    """How often to look for such frames."""
    max_attempts: int = Field(5, ge=1, le=1000)
    """Deliveries after which a frame whose decoding keeps failing goes to the dead letters."""
    frames_retention_s: float = Field(604_800, ge=0)
    """Decoded frames are kept this long (the raw archive for re-decoding), then trimmed."""
    dead_retention_s: float = Field(2_592_000, ge=0)
    """Dead letters are kept this long (they have no consumer group: trimmed by age)..."""
    dead_max_letters: int = Field(100_000, ge=0)
    """...and only the newest this many (0: no limit), so that they cannot fill Redis."""
    trim_interval_s: float = Field(60, gt=0)
    """How often to trim `{p}:frames` and `{p}:dead` (any replica may; trimming is idempotent)."""
