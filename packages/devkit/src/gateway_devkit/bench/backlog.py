"""5. Backlog drain: frame entries added straight to `{p}:frames` while decoder and publisher
are stopped, then the time for them to come out as DDATA once both are started again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway_common.entries import FrameEntry, encode
from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.bench.cpu import CpuMeter
from gateway_devkit.bench.frames import energy_alp
from gateway_devkit.bench.harness import POLL_S, PREFIX
from gateway_devkit.bench.profiles import Profiler
from gateway_devkit.bench.report import table
from gateway_devkit.bench.streams import (
    command_calls,
    command_rows,
    group_backlog,
    id_seconds,
    last_id,
    stream_entries,
)

if TYPE_CHECKING:
    from gateway_devkit.bench.harness import Context

BACKLOG_PIPELINE = 1000


def bench_backlog(ctx: Context, first_seq: int) -> None:
    options, results, gateway, client = ctx.options, ctx.results, ctx.gateway, ctx.client
    n = options.backlog_frames
    keys = StreamKeys(PREFIX)
    gateway.stop("gateway-decoder")
    gateway.stop("gateway-publisher")
    records_before = last_id(client, keys.records)
    started = time.monotonic()
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        entry = FrameEntry(alp=energy_alp(first_seq + i), received_at=now, counter=i % 256)
        pipe.xadd(keys.frames, {ENTRY_FIELD: encode(entry)})
        if (i + 1) % BACKLOG_PIPELINE == 0:
            pipe.execute()
    pipe.execute()
    fill_s = time.monotonic() - started
    frames_lag = group_backlog(client, keys.frames, DECODER_GROUP)
    memory_before = client.info("memory")["used_memory"] / 2**20
    sub = ctx.sub_factory("sub-backlog")
    t0 = time.time()
    decoder = gateway.start("gateway-decoder")
    publisher = gateway.start("gateway-publisher")
    meter = CpuMeter([decoder, publisher, gateway.redis, gateway.broker, sub.child])
    calls_before = command_calls(client)
    meter.start()
    profiler = Profiler(gateway.supervisor, options.py_spy, "backlog")
    profiler.start([decoder, publisher])
    complete = sub.wait_for(n, [decoder, publisher])
    t_done = time.time()
    meter.stop()
    calls_after = command_calls(client)
    profiler.stop_and_report()
    deadline = time.monotonic() + 10
    remaining = group_backlog(client, keys.records, PUBLISHER_GROUP)
    while remaining and time.monotonic() < deadline:  # the last acknowledgements
        time.sleep(POLL_S)
        remaining = group_backlog(client, keys.records, PUBLISHER_GROUP)
    sub.stop()
    deliveries = [d for d in sub.deliveries() if first_seq <= d.seq < first_seq + n]
    unique = {d.seq for d in deliveries}
    record_ids = [
        id_seconds(i) for i, _ in stream_entries(client, keys.records, "(" + records_before)
    ]
    first_at = min((d.at for d in deliveries), default=float("nan"))
    last_at = max((d.at for d in deliveries), default=float("nan"))
    results.backlog_s = last_at - t0 if complete else float("nan")
    decoder_s = max(record_ids) - t0 if record_ids else float("nan")
    first_record = min(record_ids) if record_ids else float("nan")
    rows = [
        (
            "entries XADDed into {p}:frames (pipelined, decoder+publisher stopped)",
            (
                f"{n:,} in {fill_s:.1f} s; group lag {frames_lag:,}; Redis used_memory "
                f"{memory_before:.0f} MB"
            ),
        ),
        (
            "decoder+publisher started -> first record / first DDATA",
            f"{first_record - t0:.2f} s / {first_at - t0:.2f} s",
        ),
        (
            "decoder: last record after",
            (
                f"{decoder_s:.1f} s "
                f"({len(record_ids) / max(1e-9, max(record_ids, default=0) - first_record):,.0f} "
                f"records/s once started)"
            ),
        ),
        (
            "publisher: last DDATA after (the drain time)",
            (
                f"{last_at - t0:.1f} s "
                f"({len(unique) / max(1e-9, last_at - first_at):,.0f} DDATA/s once started)"
            ),
        ),
        (
            "DDATA received / unique",
            f"{len(deliveries):,} / {len(unique):,}"
            + ("" if len(unique) == n else f" ({n - len(unique)} MISSING)"),
        ),
        ("records group pending + lag at the end", str(remaining)),
        ("time to the end of the subscriber's wait", f"{t_done - t0:.1f} s"),
    ]
    table(f"5. backlog drain, {n:,} frames, one decoder", ("measure", "value"), rows)
    table("5b. CPU during the drain", ("process", "CPU s", "of one core"), meter.rows())
    table(
        "5c. Redis commands during the drain (decoder: XREADGROUP + EVALSHA per batch, XACK + "
        "XADD per frame inside it; publisher: the rest)",
        ("command", "calls", "per frame", "µs in Redis per call"),
        command_rows(calls_before, calls_after, n),
    )
