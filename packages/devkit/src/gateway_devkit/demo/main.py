"""gateway-demo: the whole gateway on a simulated modem, until Ctrl-C or `--duration` (see
gateway_devkit.demo)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import redis
from rich.console import Console
from rich.live import Live

from gateway_devkit.demo.console import start_console
from gateway_devkit.demo.dashboard import Dashboard, plain_line
from gateway_devkit.demo.downlink import DownlinkDemo
from gateway_devkit.demo.infrastructure import (
    DemoError,
    delete_keys,
    gateway_counts,
    gateway_env,
    provide_infrastructure,
    start_services,
    start_simulator,
)
from gateway_devkit.demo.messages import Viewer
from gateway_devkit.processes import Supervisor, SupervisorError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REFRESH_S = 0.25
DESCRIPTION = "`make demo`: the whole gateway on a simulated modem, its MQTT output shown live."


@dataclass(frozen=True, slots=True)
class Options:
    duration_s: float | None
    sensors: int
    interval_s: float
    button_probability: float
    seed: int
    private: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="gateway-demo", description=DESCRIPTION)
    parser.add_argument("--duration", type=float, metavar="S", help="stop by itself after S s")
    parser.add_argument("--sensors", type=int, default=3, metavar="N")
    parser.add_argument("--interval-s", type=float, default=2.0, metavar="X")
    parser.add_argument("--button-probability", type=float, default=0.2, metavar="P")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--private",
        action="store_true",
        help="start private redis-server and mosquitto even when local ones answer",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    return Options(
        duration_s=args.duration,
        sensors=args.sensors,
        interval_s=args.interval_s,
        button_probability=args.button_probability,
        seed=args.seed,
        private=args.private,
    )


def say(console: Console, text: str) -> None:
    """A plain line: no markup, no highlighting, no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def check_children(supervisor: Supervisor, dashboard: Dashboard, console: Console) -> None:
    for child in supervisor.newly_exited():
        notice = f"{child.name} exited with code {child.process.returncode}; see {child.log_path}"
        dashboard.notices.append(notice)
        if not console.is_terminal:
            say(console, notice)


def watch(
    viewer: Viewer,
    supervisor: Supervisor,
    options: Options,
    console: Console,
    downlink: DownlinkDemo | None = None,
) -> Dashboard:
    """Show messages until Ctrl-C or the end of `--duration`."""
    dashboard = Dashboard()
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    with contextlib.ExitStack() as stack:
        live = None
        if console.is_terminal:
            live = stack.enter_context(
                Live(dashboard.render(), console=console, auto_refresh=False)
            )
        with contextlib.suppress(KeyboardInterrupt):
            while deadline is None or time.monotonic() < deadline:
                timeout_s = REFRESH_S if deadline is None else deadline - time.monotonic()
                message = viewer.next(min(REFRESH_S, timeout_s))
                check_children(supervisor, dashboard, console)
                if message is not None:
                    dashboard.add(message)
                    if live is None:
                        say(console, plain_line(message))
                if downlink is not None:
                    downlink.step(dashboard)
                if live is not None:
                    live.update(dashboard.render(), refresh=True)
    dashboard.ended = time.monotonic()
    return dashboard


def print_summary(
    console: Console, dashboard: Dashboard, counts: dict[str, int], stale_retained: int
) -> None:
    elapsed = max((dashboard.ended or time.monotonic()) - dashboard.started, 1e-9)
    frames = counts.get("frames", 0)
    say(
        console,
        f"received {dashboard.ddata} DDATA and {dashboard.births} DBIRTH "
        f"from {len(dashboard.devices)} devices in {elapsed:.1f} s; "
        f"gateway: {frames} frames ({frames / elapsed:.2f}/s), "
        f"{counts.get('records', 0)} records, {counts.get('dead', 0)} dead letters",
    )
    if stale_retained:
        say(console, f"ignored {stale_retained} retained messages left by earlier runs")


@contextlib.contextmanager
def demo_keys(redis_url: str, prefix: str, console: Console) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):
            deleted = delete_keys(redis_url, prefix)
            say(console, f"deleted {deleted} Redis keys under {prefix}:")


def run(options: Options, console: Console) -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    say(console, f"service logs (JSON lines): {log_dir}")
    prefix = f"demo-{os.getpid()}"
    with contextlib.ExitStack() as stack:  # stopped in reverse order
        infra = provide_infrastructure(log_dir, options.private, stack)
        for note in infra.notes:
            say(console, note)
        viewer = Viewer(infra)
        stack.callback(viewer.close)
        stack.enter_context(demo_keys(infra.redis_url, prefix, console))
        gateway = Supervisor(log_dir, gateway_env(infra, prefix))
        stack.callback(gateway.stop_all)
        sim_url = start_simulator(
            gateway, options.sensors, options.interval_s, options.button_probability, options.seed
        )
        metrics_ports = start_services(gateway, infra, sim_url)
        say(console, f"gateway-sim on {sim_url}, stream prefix {prefix}")
        say(console, f"field console: {start_console(gateway, metrics_ports)}")
        downlink = DownlinkDemo(infra, prefix, lambda line: say(console, line))
        dashboard = watch(viewer, gateway, options, console, downlink)
        gateway.stop_all()
        counts = gateway_counts(infra.redis_url, prefix)
        print_summary(console, dashboard, counts, viewer.stale_retained)
        failed = bool(dashboard.notices) or (options.duration_s is not None and not dashboard.ddata)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored
    console = Console()
    try:
        return run(options, console)
    except (DemoError, SupervisorError) as exc:
        say(Console(stderr=True), f"demo: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
