"""2. End to end: a burst of frames written into the pty as fast as it takes them, to the last
DDATA received; every frame must arrive exactly once. Then the MQTT floor: a bare paho client
publishing as many messages of the same size with the same window."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

from gateway_common.streams import StreamKeys
from gateway_devkit.bench.cpu import CpuMeter
from gateway_devkit.bench.frames import serial_frames
from gateway_devkit.bench.harness import PREFIX, BenchError
from gateway_devkit.bench.profiles import Profiler
from gateway_devkit.bench.report import TARGET_E2E_RATIO, table, verdict
from gateway_devkit.bench.streams import (
    command_calls,
    command_rows,
    id_seconds,
    last_id,
    stream_entries,
)

if TYPE_CHECKING:
    from gateway_devkit.bench.harness import Context


def bench_end_to_end(ctx: Context, first_seq: int) -> None:
    options, results, gateway, client = ctx.options, ctx.results, ctx.gateway, ctx.client
    n = options.frames
    frames = serial_frames(first_seq, n, first_counter=1)
    data = b"".join(frame for _, frame in frames)
    sub = ctx.sub_factory("sub-e2e")
    keys = StreamKeys(PREFIX)
    frames_before, records_before = last_id(client, keys.frames), last_id(client, keys.records)
    services = gateway.running()
    meter = CpuMeter([*services, gateway.redis, gateway.broker, sub.child])
    profiler = Profiler(gateway.supervisor, options.py_spy, "burst")
    profiler.start(services)
    calls_before = command_calls(client)
    meter.start()
    t0 = time.time()
    gateway.line.write(data)
    t_written = time.time()
    complete = sub.wait_for(n, services)
    meter.stop()
    calls_after = command_calls(client)
    profiler.stop_and_report()
    time.sleep(0.5)  # duplicates, if any, would arrive now
    sub.poll()
    sub.stop()
    deliveries = [d for d in sub.deliveries() if first_seq <= d.seq < first_seq + n]
    unique = {d.seq for d in deliveries}
    last_frame = max(
        (id_seconds(i) for i, _ in stream_entries(client, keys.frames, "(" + frames_before)),
        default=float("nan"),
    )
    last_record = max(
        (id_seconds(i) for i, _ in stream_entries(client, keys.records, "(" + records_before)),
        default=float("nan"),
    )
    first_at = min((d.at for d in deliveries), default=float("nan"))
    last_at = max((d.at for d in deliveries), default=float("nan"))
    elapsed = last_at - t0
    e2e = len(unique) / elapsed if deliveries else 0.0
    results.e2e_rate, results.e2e_complete = e2e, complete and len(unique) == n
    dead = client.xlen(keys.dead) if client.exists(keys.dead) else 0
    ratio = e2e / results.d7a_rate if results.d7a_rate else float("nan")
    rows = [
        ("frames written (energy, 16 devices)", f"{n:,} ({len(data):,} bytes)"),
        (
            "pty took them all after",
            f"{t_written - t0:.2f} s ({n / (t_written - t0):,.0f} frames/s)",
        ),
        ("ingest: last frame in {p}:frames after", f"{last_frame - t0:.2f} s"),
        ("decoder: last record in {p}:records after", f"{last_record - t0:.2f} s"),
        ("first DDATA received after", f"{first_at - t0:.3f} s"),
        ("last DDATA received after", f"{elapsed:.2f} s"),
        ("end to end (first byte written -> last DDATA received)", f"{e2e:,.0f} frames/s"),
        (
            "ratio to d7a",
            f"{ratio:,.1f} x (target ≥ {TARGET_E2E_RATIO}: {verdict(ratio >= TARGET_E2E_RATIO)})",
        ),
        (
            "DDATA received / unique / duplicates",
            f"{len(deliveries):,} / {len(unique):,} / {len(deliveries) - len(unique):,}",
        ),
        ("every frame delivered", "yes" if len(unique) == n else f"NO: {n - len(unique)} missing"),
        ("dead letters", str(dead)),
    ]
    table("2. end to end, unpaced burst, one decoder", ("measure", "value"), rows)
    table(
        "2b. CPU during the burst (first byte -> last DDATA)",
        ("process", "CPU s", "of one core"),
        meter.rows(),
    )
    last_lines = sub.out_path.read_bytes().splitlines()[-10:]
    sizes = [len(line.split(b" ", 2)[2]) for line in last_lines]
    window = min(64, ctx.receive_maximum or 64)
    floor_rate, floor_cpu = paho_floor(ctx, n, window, max(sizes, default=1000))
    pub_cpu = meter.used.get("gateway-publisher", 0.0) / n
    table(
        f"2c. the MQTT floor: a bare paho client, QoS 1, window {window}, same payload size",
        ("what", "messages/s", "CPU ms per message"),
        [
            (
                "bare paho publisher (its own process, nothing else)",
                f"{floor_rate:,.0f}",
                f"{floor_cpu * 1000:.3f}",
            ),
            ("gateway-publisher in the burst above", f"{e2e:,.0f}", f"{pub_cpu * 1000:.3f}"),
        ],
    )
    table(
        "2d. Redis commands during the burst (all services; EVALSHA's inner calls counted too)",
        ("command", "calls", "per frame", "µs in Redis per call"),
        command_rows(calls_before, calls_after, n),
    )


def paho_floor(ctx: Context, count: int, window: int, size: int) -> tuple[float, float]:
    """(messages/s, CPU s per message) of the bare paho publisher (paho_floor.py)."""
    argv = [sys.executable, "-m", "gateway_devkit.bench.paho_floor", str(ctx.gateway.broker.port)]
    argv += [str(count), str(window), str(size)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    try:
        rate_text, cpu_text = done.stdout.split()
        return float(rate_text), float(cpu_text)
    except ValueError as exc:
        raise BenchError(f"the paho floor failed: {done.stderr[-2000:]}") from exc
