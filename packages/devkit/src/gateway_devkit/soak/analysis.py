"""What the soak's samples say: memory growth after the warm-up, CPU per 1,000 frames, and the
bound retention puts on Redis's memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_devkit.soak.samples import Sample

__all__ = ["Growth", "RedisBound", "cpu_per_kframe", "redis_bound", "rss_growth", "warmup_index"]


def warmup_index(samples: Sequence[Sample], warmup_frames: int) -> int:
    """The first sample at which `warmup_frames` frames had been accepted."""
    for index, sample in enumerate(samples):
        if sample.frames >= warmup_frames:
            return index
    raise ValueError(f"no sample reached {warmup_frames} frames")


@dataclass(frozen=True, slots=True)
class Growth:
    name: str
    at_warmup_kb: int
    peak_after_kb: int
    end_kb: int

    @property
    def ratio(self) -> float:
        """Peak after the warm-up over the value at its end, minus 1 (0.1: 10 % more)."""
        return self.peak_after_kb / self.at_warmup_kb - 1


def rss_growth(samples: Sequence[Sample], warmup: int) -> dict[str, Growth]:
    """Per process: its VmRSS at the warm-up sample, its peak from then on, and at the end."""
    after = samples[warmup:]
    growth = {}
    for name, base in after[0].rss_kb.items():
        values = [s.rss_kb[name] for s in after if name in s.rss_kb]
        growth[name] = Growth(name, base, max(values), values[-1])
    return growth


def cpu_per_kframe(samples: Sequence[Sample], warmup: int) -> dict[str, float]:
    """Per process: CPU seconds per 1,000 frames accepted, from the warm-up sample to the last
    one it was running in (start-up costs left out)."""
    first = samples[warmup]
    per_kframe = {}
    for name, start in first.cpu_s.items():
        last = next(s for s in reversed(samples) if name in s.cpu_s)
        frames = last.frames - first.frames
        if frames > 0:
            per_kframe[name] = 1000 * (last.cpu_s[name] - start) / frames
    return per_kframe


@dataclass(frozen=True, slots=True)
class RedisBound:
    """Redis's memory against what retention allows.

    Every stream keeps what is younger than its retention, and what arrived since its last
    trim: at most `rate * (retention + trim interval)` entries each. Retention never trims what
    a group has not acknowledged yet, so the backlog of both groups at a sample comes on top
    (about nothing while the pipeline keeps up). The bytes an entry costs are measured before
    anything could be trimmed (the memory over the empty gateway's, over the entries then).
    At every sample, the entries held must stay within `slack` times the allowed entries (those
    of the retention plus the backlog), and `used_memory` within the empty gateway's plus as
    many entries at the measured cost.
    """

    base_bytes: int
    bytes_per_entry: float
    calibrated_at_entries: int
    rate_per_s: float
    entries_allowed: int
    """By the retention alone (no backlog)."""
    slack: float
    peak_bytes: int
    peak_entries: int
    peak_backlog: int
    over: tuple[float, ...]
    """The times (t_s) of the samples beyond the bound."""

    @property
    def bound_bytes(self) -> int:
        """The bound on `used_memory` with no backlog."""
        return self.bytes_bound(0)

    def bytes_bound(self, backlog: int) -> int:
        return round(
            self.base_bytes + self.bytes_per_entry * (self.entries_allowed + backlog) * self.slack
        )

    def entries_bound(self, backlog: int) -> int:
        return round((self.entries_allowed + backlog) * self.slack)

    @property
    def held(self) -> bool:
        return not self.over

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "bound_bytes": self.bound_bytes, "held": self.held}


def redis_bound(
    samples: Sequence[Sample],
    *,
    retentions_s: Sequence[float],
    trim_interval_s: float,
    flow_end: int,
    slack: float = 1.25,
) -> RedisBound:
    """The bound for `samples` (the first taken before any frame), the streams kept
    `retentions_s` and trimmed every `trim_interval_s`; the rate is the mean from the first
    frame to the sample `flow_end`."""
    base = samples[0].redis_used_memory
    first = next(i for i, s in enumerate(samples) if s.frames > 0)
    if first == 0:
        raise ValueError("the first sample must come before the first frame")
    before, started, end = samples[first - 1], samples[first], samples[flow_end]
    rate = (end.frames - started.frames) / max(end.t_s - started.t_s, 1e-9)
    # Nothing can have been trimmed yet: the first frame came after `before`.
    untrimmed = [
        s
        for s in samples[first:]
        if s.t_s - before.t_s < min(retentions_s) and s.frames_len + s.records_len > 0
    ]
    if not untrimmed:
        raise ValueError("no sample before the first trim: sample more often than the retention")
    calibration = untrimmed[-1]
    entries = calibration.frames_len + calibration.records_len
    bound = RedisBound(
        base_bytes=base,
        bytes_per_entry=round((calibration.redis_used_memory - base) / entries, 1),
        calibrated_at_entries=entries,
        rate_per_s=round(rate, 1),
        entries_allowed=round(sum(rate * (r + trim_interval_s) for r in retentions_s)),
        slack=slack,
        peak_bytes=max(s.redis_used_memory for s in samples),
        peak_entries=max(s.frames_len + s.records_len for s in samples),
        peak_backlog=max(s.backlog for s in samples),
        over=(),
    )
    over = tuple(
        s.t_s
        for s in samples
        if s.redis_used_memory > bound.bytes_bound(s.backlog)
        or s.frames_len + s.records_len > bound.entries_bound(s.backlog)
    )
    return replace(bound, over=over)
