"""gateway-bench: the measurements in order, on a private Redis, broker and pty, then the
summary against issue 4's targets (see gateway_devkit.bench)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gateway_devkit.bench.backlog import bench_backlog
from gateway_devkit.bench.decoder import bench_decoder
from gateway_devkit.bench.end_to_end import bench_end_to_end
from gateway_devkit.bench.harness import SERVICES, BenchError, Context, Gateway, Results, log_value
from gateway_devkit.bench.latency import bench_latency
from gateway_devkit.bench.memory import report_memory
from gateway_devkit.bench.options import Options, parse_args
from gateway_devkit.bench.report import (
    ISSUE_D7A_RATE,
    TARGET_DECODER_RATIO,
    TARGET_E2E_RATIO,
    TARGET_INGEST_MS,
    TARGET_P99_MS,
    TARGET_RSS_MB,
    bytecode_state,
    describe_machine,
    table,
    verdict,
)
from gateway_devkit.bench.subscriber import Subscriber
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.processes import Supervisor, SupervisorError
from gateway_devkit.servers import (
    LOOPBACK,
    PrivateBroker,
    PrivateRedis,
    ServerError,
    find_binary,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


def require(name: str) -> str:
    found = find_binary(name)
    if found is None:
        raise BenchError(f"`{name}` is not installed (e.g. `apt-get install {name}`)")
    return found


def summary(options: Options, results: Results) -> None:
    dec = results.entry_rate / results.d7a_rate if results.d7a_rate else float("nan")
    e2e = results.e2e_rate / results.d7a_rate if results.d7a_rate else float("nan")
    rss = max(results.rss_mb.values(), default=float("nan"))
    rows = [
        ("decoder ≥ 500x d7a", f"{dec:,.0f}x", verdict(dec >= TARGET_DECODER_RATIO)),
        (
            "end to end ≥ 30x d7a, every frame delivered",
            (
                f"{e2e:,.1f}x ({results.e2e_rate:,.0f}/s), "
                f"{'all delivered' if results.e2e_complete else 'NOT all delivered'}"
            ),
            verdict(e2e >= TARGET_E2E_RATIO and results.e2e_complete),
        ),
        (
            "p99 latency ≤ 20 ms at the line rate",
            f"{results.p99_ms:.2f} ms",
            verdict(results.p99_ms <= TARGET_P99_MS),
        ),
        (
            "≤ 60 MB resident per service (peak)",
            ", ".join(f"{k.removeprefix('gateway-')} {v:.0f}" for k, v in results.rss_mb.items()),
            verdict(rss <= TARGET_RSS_MB),
        ),
        (
            "ingest hands a frame on within 1 ms (receive stamp p99)",
            f"{results.ingest_p99_ms:.3f} ms",
            verdict(results.ingest_p99_ms <= TARGET_INGEST_MS),
        ),
        (
            "... in Redis within 1 ms of the receive stamp (ingest's histogram)",
            f"{results.handoff_within_1ms} of the frames",
            "-",
        ),
        (
            "... in Redis within 1 ms of the last byte (entry id ±0.5 ms, p99)",
            f"{results.in_redis_p99_ms:.2f} ms",
            verdict(results.in_redis_p99_ms <= TARGET_INGEST_MS),
        ),
        (f"backlog of {options.backlog_frames:,} drained", f"{results.backlog_s:.1f} s", "-"),
        (
            f"decoder ≥ 500 x {ISSUE_D7A_RATE:g}/s (the issue's d7a figure)",
            f"{results.entry_rate:,.0f}/s",
            verdict(results.entry_rate >= TARGET_DECODER_RATIO * ISSUE_D7A_RATE),
        ),
        (
            f"end to end ≥ 30 x {ISSUE_D7A_RATE:g}/s (the issue's d7a figure)",
            f"{results.e2e_rate:,.0f}/s",
            verdict(results.e2e_rate >= TARGET_E2E_RATIO * ISSUE_D7A_RATE),
        ),
    ]
    table(
        f"summary against issue 4's targets (d7a measured here: {results.d7a_rate:,.0f}/s)",
        ("target", "measured", "verdict"),
        rows,
    )
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def setup_rows(options: Options, gateway: Gateway, receive_max: object) -> list[tuple[str, str]]:
    aof = "AOF everysec" if options.redis_aof else "no persistence"
    return [
        ("Redis", f"private, {aof}, {gateway.redis.url}"),
        (
            "MQTT",
            (
                f"private mosquitto on {LOOPBACK}:{gateway.broker.port}, no TLS; "
                f"broker Receive Maximum {receive_max}, publisher window 64"
            ),
        ),
        ("serial line", f"pty {gateway.line.path} (raw)"),
        ("bytecode", bytecode_state()),
        ("subscriber", "mosquitto_sub, QoS 1, stamps each message on arrival (%U)"),
        ("services", "gateway-ingest, 1 x gateway-decoder, gateway-publisher; log level info"),
    ]


def private_broker(work_dir: Path, options: Options) -> PrivateBroker:
    # The subscriber must see every message: no per-client queue limit on the broker side.
    config = "max_queued_messages 0\n"
    if options.broker_inflight is not None:
        config += f"max_inflight_messages {options.broker_inflight}\n"
    return PrivateBroker(work_dir / "mosquitto", persistence=False, extra_config=config)


def measure(options: Options, results: Results, gateway: Gateway) -> None:
    """Everything after the decoder, on the running gateway."""
    client = gateway.redis.client()
    for name in SERVICES:
        gateway.start(name)
    gateway.wait_log("gateway-ingest", "serial_opened")
    gateway.wait_log("gateway-publisher", "mqtt_connected")
    gateway.wait_log("gateway-decoder", "decoder_started")
    receive_max = log_value(gateway.child("gateway-publisher"), "mqtt_connected", "receive_maximum")
    table("setup", ("what", "value"), setup_rows(options, gateway, receive_max))

    def sub_factory(name: str) -> Subscriber:
        sub = Subscriber(gateway.supervisor, gateway.broker.port, name)
        sub.wait_subscribed()
        return sub

    ctx = Context(options, results, gateway, client, sub_factory, receive_max)
    bench_end_to_end(ctx, first_seq=0)
    bench_latency(ctx, first_seq=10_000_000)
    report_memory(
        "4. resident memory after the burst and the paced run",
        [*gateway.running(), gateway.redis, gateway.broker],
        results,
    )
    bench_backlog(ctx, first_seq=20_000_000)
    report_memory(
        "4b. resident memory after the backlog drain (decoder, publisher restarted for it)",
        [*gateway.running(), gateway.redis],
        results,
    )
    summary(options, results)
    client.close()


def run(options: Options) -> int:
    redis_bin, mosquitto_bin = require("redis-server"), require("mosquitto")
    for client_tool in ("mosquitto_sub", "mosquitto_pub"):  # told now rather than mid-run
        require(client_tool)
    print("# gateway benchmark" + (" (--quick)" if options.quick else ""))
    table("machine", ("what", "value"), describe_machine(redis_bin, mosquitto_bin))
    results = Results()
    bench_decoder(options, results)
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    failed = True
    try:
        with contextlib.ExitStack() as stack:  # stopped in reverse order
            line = ModemLine()
            stack.callback(line.close)
            redis_server = PrivateRedis(
                work_dir / "redis", appendfsync="everysec" if options.redis_aof else None
            )
            stack.callback(redis_server.stop)
            redis_server.start()
            broker = private_broker(work_dir, options)
            stack.callback(broker.stop)
            broker.start()
            supervisor = Supervisor(work_dir)
            stack.callback(supervisor.stop_all)
            gateway = Gateway(supervisor, redis_server, broker, line)
            measure(options, results, gateway)
        failed = False
    finally:
        if options.keep_logs or failed:
            print(f"\nlogs: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        return run(options)
    except (BenchError, SupervisorError, ServerError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
