"""3. Latency at the serial line rate: frames written whole when their last byte would leave a
115200-baud UART; per frame, last byte written -> DDATA received, split into stages by
ingest's receive stamp and the frame's and the record's entry ids; ingest's own hand-off
histogram; the floors any Python process gets here."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway_common.streams import StreamKeys
from gateway_devkit.bench.cpu import CpuMeter
from gateway_devkit.bench.floors import floor_rows, stage
from gateway_devkit.bench.frames import seq_of_frame, seq_of_record, serial_frames
from gateway_devkit.bench.harness import PREFIX, BenchError
from gateway_devkit.bench.report import TARGET_INGEST_MS, TARGET_P99_MS, pct, table, verdict
from gateway_devkit.bench.streams import id_seconds, last_id, stream_entries
from gateway_devkit.scrape import ScrapeError, scrape

if TYPE_CHECKING:
    from gateway_devkit.bench.harness import Context

BAUD = 115200
HANDOFF_METRIC = "gateway_ingest_handoff_seconds"


def handoff_buckets(port: int) -> dict[float, float]:
    """ingest's hand-off histogram (receive stamp -> Redis accepted): upper bound -> count."""
    try:
        samples = scrape(port, timeout_s=5)
    except ScrapeError as exc:
        raise BenchError(f"ingest's metrics: {exc}") from exc
    return {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == f"{HANDOFF_METRIC}_bucket"
    }


def handoff_rows(before: dict[float, float], after: dict[float, float]) -> list[tuple[str, str]]:
    """Cumulative share of the frames handed on within each bound, up to 2 ms."""
    counts = {le: after[le] - before.get(le, 0.0) for le in after}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return [("frames", "0")]
    rows = [
        (f"≤ {le * 1000:g} ms", f"{counts[le] / total:.1%}") for le in sorted(counts) if le <= 0.002
    ]
    return [*rows, ("frames", f"{total:,.0f}")]


def bench_latency(ctx: Context, first_seq: int) -> None:
    options, results, gateway, client = ctx.options, ctx.results, ctx.gateway, ctx.client
    n = options.latency_frames
    frames = serial_frames(first_seq, n, first_counter=(options.frames + 1) % 256)
    sub = ctx.sub_factory("sub-latency")
    keys = StreamKeys(PREFIX)
    frames_before, records_before = last_id(client, keys.frames), last_id(client, keys.records)
    meter = CpuMeter([*gateway.running(), gateway.redis, gateway.broker, sub.child])
    handoff_before = handoff_buckets(gateway.ingest_metrics_port)
    meter.start()
    t0 = time.time()
    stamps = gateway.line.paced([frame for _, frame in frames])
    written = {seq: at for (seq, _), at in zip(frames, stamps, strict=True) if at is not None}
    t_written = time.time()
    sub.wait_for(n, gateway.running())
    meter.stop()
    sub.stop()
    handoff_table = handoff_rows(handoff_before, handoff_buckets(gateway.ingest_metrics_port))
    deliveries = {d.seq: d.at for d in sub.deliveries() if d.seq in written}
    received: dict[int, float] = {}
    accepted: dict[int, float] = {}
    for entry_id, data in stream_entries(client, keys.frames, "(" + frames_before):
        seq, rx = seq_of_frame(data)
        received[seq], accepted[seq] = rx, id_seconds(entry_id)
    recorded: dict[int, float] = {}
    for entry_id, data in stream_entries(client, keys.records, "(" + records_before):
        seq, _frame_id = seq_of_record(data)
        recorded[seq] = id_seconds(entry_id)

    half_ms = 0.0005  # an entry id is truncated to the ms: its middle is 0.5 ms later
    accepted_mid = {s: t + half_ms for s, t in accepted.items()}
    recorded_mid = {s: t + half_ms for s, t in recorded.items()}
    total = stage("last byte written -> DDATA received", written, deliveries, "the target")
    rows = [
        total,
        stage("  last byte written -> ingest's receive stamp", written, received, "µs clock"),
        stage("  last byte written -> frame XADDed (entry id)", written, accepted_mid, "±0.5 ms"),
        stage("  frame XADDed -> record XADDed (decoder)", accepted, recorded, "ids, ±1 ms"),
        stage("  record XADDed -> DDATA received (publisher)", recorded_mid, deliveries, "±0.5 ms"),
    ]
    rows += floor_rows(gateway, frames)
    line_rate = n / (t_written - t0)
    table(
        f"3. latency at the serial line rate ({BAUD} baud 8N1: {line_rate:.0f} frames/s, "
        f"{n:,} frames), ms",
        ("stage", "frames", "p50", "p90", "p99", "max", "note"),
        rows,
    )
    lat = [deliveries[s] - written[s] for s in written if s in deliveries]
    ing = [received[s] - written[s] for s in written if s in received]
    in_redis = [accepted_mid[s] - written[s] for s in written if s in accepted_mid]
    results.p99_ms = pct(lat, 99) * 1000 if lat else float("nan")
    results.ingest_p99_ms = pct(ing, 99) * 1000 if ing else float("nan")
    results.in_redis_p99_ms = pct(in_redis, 99) * 1000 if in_redis else float("nan")
    missing = n - len(deliveries)
    print(
        f"\n   delivered {len(deliveries):,}/{n:,}"
        + (f" ({missing} MISSING)" if missing else "")
        + f"; p99 {results.p99_ms:.2f} ms (target ≤ {TARGET_P99_MS:g} ms: "
        f"{verdict(results.p99_ms <= TARGET_P99_MS)}); ingest receive p99 "
        f"{results.ingest_p99_ms:.3f} ms (target ≤ {TARGET_INGEST_MS:g} ms: "
        f"{verdict(results.ingest_p99_ms <= TARGET_INGEST_MS)}); frame in Redis (entry id, "
        f"±0.5 ms) p99 {results.in_redis_p99_ms:.2f} ms "
        f"({verdict(results.in_redis_p99_ms <= TARGET_INGEST_MS)})"
    )
    table(
        "3a. ingest's own histogram: receive stamp -> Redis accepted the frame (its batch's reply)",
        ("within", "share of the paced frames"),
        handoff_table,
    )
    results.handoff_within_1ms = next((v for k, v in handoff_table if k == "≤ 1 ms"), "-")
    table(
        "3b. CPU at the line rate",
        ("process", "CPU s", "of one core"),
        meter.rows(),
    )
