"""The soak's samples as CSV, and its summary as text and JSON."""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from gateway_devkit.soak.analysis import Growth, RedisBound
    from gateway_devkit.soak.samples import Sample

__all__ = ["summary_text", "write_csv", "write_summary"]

_COUNTS = ("frames", "records", "dead", "ddata", "frames_len", "records_len", "backlog")


def write_csv(samples: Sequence[Sample], names: Sequence[str], path: Path) -> None:
    """One row per sample: time, counts, Redis's used_memory, then VmRSS (kB) and CPU seconds
    of each process in `names` (empty once it has exited)."""
    header = ["t_s", *_COUNTS, "redis_used_memory_bytes", "redis_aof_bytes", "machine_busy_s"]
    header += [f"{name}_rss_kb" for name in names] + [f"{name}_cpu_s" for name in names]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for s in samples:
            row: list[Any] = [s.t_s, *(getattr(s, c) for c in _COUNTS), s.redis_used_memory]
            row += [s.redis_aof_bytes, round(s.machine_busy_s, 2)]
            row += [s.rss_kb.get(name, "") for name in names]
            row += [round(s.cpu_s[name], 2) if name in s.cpu_s else "" for name in names]
            writer.writerow(row)


def summary_text(
    growth: Mapping[str, Growth],
    cpu: Mapping[str, float],
    bound: RedisBound,
    facts: Mapping[str, Any],
) -> str:
    """A plain-text summary: the facts of the run, then one row per process, then Redis."""
    lines = [f"{key}: {value}" for key, value in facts.items()]
    lines.append("")
    lines.append(
        f"{'process':<22}{'RSS at warm-up MB':>18}{'peak after MB':>15}{'growth':>9}"
        f"{'end MB':>9}{'CPU s / 1000 frames':>21}"
    )
    for name, g in growth.items():
        lines.append(
            f"{name:<22}{g.at_warmup_kb / 1024:>18.1f}{g.peak_after_kb / 1024:>15.1f}"
            f"{100 * g.ratio:>8.1f}%{g.end_kb / 1024:>9.1f}{cpu.get(name, float('nan')):>21.3f}"
        )
    lines.append("")
    lines.append(
        f"redis used_memory: peak {bound.peak_bytes / 2**20:.1f} MB, bound "
        f"{bound.bound_bytes / 2**20:.1f} MB (empty {bound.base_bytes / 2**20:.1f} MB + "
        f"{bound.entries_allowed} entries allowed by retention at {bound.rate_per_s} frames/s x "
        f"{bound.bytes_per_entry:.0f} B each, measured at {bound.calibrated_at_entries} "
        f"entries, x {bound.slack}, plus the backlog's entries when there is one); peak "
        f"entries held {bound.peak_entries}, peak backlog {bound.peak_backlog}; "
        f"{'within the bound' if bound.held else f'BEYOND it at t = {bound.over} s'}"
    )
    return "\n".join(lines) + "\n"


def write_summary(
    path: Path,
    growth: Mapping[str, Growth],
    cpu: Mapping[str, float],
    bound: RedisBound,
    facts: Mapping[str, Any],
) -> None:
    """The summary as JSON (`path`) and as text (the same name, `.txt`)."""
    obj = {
        **facts,
        "processes": {
            name: {
                "rss_at_warmup_kb": g.at_warmup_kb,
                "rss_peak_after_warmup_kb": g.peak_after_kb,
                "rss_end_kb": g.end_kb,
                "rss_growth": round(g.ratio, 4),
                "cpu_s_per_1000_frames": round(cpu[name], 4) if name in cpu else None,
            }
            for name, g in growth.items()
        },
        "redis": bound.as_json(),
    }
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".txt").write_text(summary_text(growth, cpu, bound, facts), encoding="utf-8")
