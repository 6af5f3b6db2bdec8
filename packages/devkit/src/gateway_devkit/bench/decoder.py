"""1. The decoder, in the bench's process before anything else starts: frames per second of the
fast path against the reference ALP library (d7a), on the issue's energy frame."""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from typing import TYPE_CHECKING

from gateway_common.entries import FrameEntry, Record, encode
from gateway_common.records import decode_entry
from gateway_common.streams import ENTRY_FIELD
from gateway_dash7 import parse_unsolicited
from gateway_devkit.bench.frames import ROOT, vector_energy_alp
from gateway_devkit.bench.harness import BenchError
from gateway_devkit.bench.report import TARGET_DECODER_RATIO, table, verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_devkit.bench.harness import Results
    from gateway_devkit.bench.options import Options


def load_reference() -> Callable[[bytes], object]:
    """The d7a oracle of the codec's tests (packages/dash7/tests/reference_alp.py): d7a is a dev
    dependency, so the oracle is a test module of the repository, not installed code."""
    tests = ROOT / "packages" / "dash7" / "tests"
    if str(tests) not in sys.path:
        sys.path.append(str(tests))
    module = importlib.import_module("reference_alp")
    parse: Callable[[bytes], object] = module.parse_reference
    return parse


def rate(fn: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Calls per second: the median of `rounds` timed rounds of about seconds/rounds each."""
    results: list[float] = []
    per_round = seconds / rounds
    for _ in range(rounds):
        calls = 0
        batch = 1
        started = time.perf_counter()
        while True:
            for _ in range(batch):
                fn()
            calls += batch
            elapsed = time.perf_counter() - started
            if elapsed >= per_round:
                break
            batch = min(batch * 2, 10_000)
        results.append(calls / elapsed)
    return statistics.median(results)


def bench_decoder(options: Options, results: Results) -> None:
    alp, source = vector_energy_alp()
    reference = load_reference()
    entry_fields = {ENTRY_FIELD: encode(FrameEntry(alp=alp, received_at=time.time(), counter=1))}
    fast_seconds = 0.3 if options.quick else 0.8

    def full_path() -> object:
        outcome = decode_entry("1700000000000-0", entry_fields)
        assert isinstance(outcome, Record), outcome
        return encode(outcome)

    check = decode_entry("1-0", entry_fields)
    if not isinstance(check, Record):
        raise BenchError(f"the energy frame does not decode: {check.reason}")
    candidates: dict[str, tuple[Callable[[], object], float]] = {
        "d7a": (lambda: reference(alp), options.d7a_seconds / 3),
        "parse": (lambda: parse_unsolicited(alp), fast_seconds),
        "entry": (lambda: decode_entry("1700000000000-0", entry_fields), fast_seconds),
        "full": (full_path, fast_seconds),
    }
    # Rounds interleave the candidates, so a change in the machine's load hits them alike.
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(3):
        for name, (fn, seconds) in candidates.items():
            samples[name].append(rate(fn, seconds, rounds=1))
    d7a, parse, entry, full = (statistics.median(samples[n]) for n in candidates)
    results.d7a_rate, results.entry_rate = d7a, entry
    rows = [
        (
            "d7a: Parser().parse (reference_alp.parse_reference, tests of packages/dash7)",
            f"{d7a:,.0f}",
            "1",
            "-",
        ),
        (
            "fast: gateway_dash7.parse_unsolicited (ALP only)",
            f"{parse:,.0f}",
            f"{parse / d7a:,.0f}",
            "-",
        ),
        (
            "fast: records.decode_entry (msgpack entry + ALP + file + Record)",
            f"{entry:,.0f}",
            f"{entry / d7a:,.0f}",
            f"≥ {TARGET_DECODER_RATIO}: {verdict(entry / d7a >= TARGET_DECODER_RATIO)}",
        ),
        (
            "fast: decode_entry + entries.encode(Record) (the decoder's CPU per frame)",
            f"{full:,.0f}",
            f"{full / d7a:,.0f}",
            "-",
        ),
    ]
    table(
        f"1. decoder, one core, {source}; median of 3 interleaved rounds",
        ("what", "frames/s", "x d7a", "target"),
        rows,
    )
