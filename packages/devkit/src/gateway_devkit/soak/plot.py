"""The soak's samples as a picture (the one module that imports matplotlib, the dev kit's `plot`
extra): resident memory per process, Redis's memory against its bound, and CPU per process,
each against the frames accepted."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after the backend is chosen

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from gateway_devkit.soak.analysis import RedisBound
    from gateway_devkit.soak.samples import Sample

__all__ = ["plot_samples"]

_MB = 2**20


def plot_samples(
    samples: Sequence[Sample],
    names: Sequence[str],
    bound: RedisBound,
    warmup_frames: int,
    *,
    path: Path,
    title: str,
) -> None:
    """Write the PNG `path`: three panels sharing the frames accepted (thousands) as x."""
    x = [s.frames / 1000 for s in samples]
    fig, (rss_ax, redis_ax, cpu_ax) = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    fig.suptitle(title)

    for name in names:
        points = [(xi, s.rss_kb[name] / 1024) for xi, s in zip(x, samples, strict=True)
                  if name in s.rss_kb]  # fmt: skip
        rss_ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
    rss_ax.set_ylabel("VmRSS (MB)")
    rss_ax.set_ylim(bottom=0)
    rss_ax.legend(loc="upper left", fontsize="small", ncol=2)

    redis_ax.plot(x, [s.redis_used_memory / _MB for s in samples], label="Redis used_memory")
    redis_ax.plot(x, [s.redis_aof_bytes / _MB for s in samples], color="tab:green",
                  linewidth=0.8, label="AOF file")  # fmt: skip
    redis_ax.plot(x, [bound.bytes_bound(s.backlog) / _MB for s in samples], color="red",
                  linestyle="--", label="bound (retention + backlog)")  # fmt: skip
    redis_ax.set_ylabel("Redis (MB)")
    redis_ax.set_ylim(bottom=0)
    entries_ax = redis_ax.twinx()
    entries_ax.plot(x, [s.frames_len / 1000 for s in samples], color="grey", linewidth=0.8,
                    label="frames kept")  # fmt: skip
    entries_ax.plot(x, [s.records_len / 1000 for s in samples], color="black", linewidth=0.8,
                    label="records kept")  # fmt: skip
    entries_ax.set_ylabel("stream entries (thousands)")
    entries_ax.set_ylim(bottom=0)
    handles = redis_ax.get_legend_handles_labels()
    more = entries_ax.get_legend_handles_labels()
    redis_ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left",
                    fontsize="small")  # fmt: skip

    for name in names:
        xs, pct = [], []
        for a, b in itertools.pairwise(samples):
            if name in a.cpu_s and name in b.cpu_s and b.t_s > a.t_s:
                xs.append((a.frames + b.frames) / 2000)
                pct.append(100 * (b.cpu_s[name] - a.cpu_s[name]) / (b.t_s - a.t_s))
        cpu_ax.plot(xs, pct, label=name)
    cpu_ax.set_ylabel("CPU (% of one core)")
    cpu_ax.set_xlabel("frames accepted (thousands)")
    cpu_ax.set_ylim(bottom=0)
    cpu_ax.legend(loc="upper left", fontsize="small", ncol=2)

    for ax in (rss_ax, redis_ax, cpu_ax):
        ax.axvline(warmup_frames / 1000, color="grey", linestyle=":", linewidth=1)
        ax.grid(visible=True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
