"""`make demo`: the whole gateway on a simulated modem, its MQTT output shown live.

No hardware needed. Uses the Redis on 127.0.0.1:6379 and the Mosquitto on 127.0.0.1:1883 when
they answer, otherwise starts private `redis-server` / `mosquitto` on free ports. Then starts
gateway-sim (TCP), gateway-ingest, gateway-decoder and gateway-publisher from this virtualenv,
subscribes to `mqtts/demo/#` and shows what the publisher sends until Ctrl-C (or `--duration`).
Once the first reading is in, it sends that device a DCMD (a new interval), as SCorp-io would,
and shows its command going through (`DownlinkDemo`).
Everything it started is stopped at the end, and its Redis keys are deleted.

Exit code: 0, or 1 when something is missing, a service died, or a timed run saw no reading.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

LOOPBACK = "127.0.0.1"
DEFAULT_REDIS_PORT = 6379
DEFAULT_MQTT_PORT = 1883
PROJECT_ID = "demo"
EDGE_NODE_ID = "demo-gateway"
TOPIC_ROOT = "mqtts"
BIN_DIR = Path(sys.executable).parent
STOP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 10.0
REFRESH_S = 0.25
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

ACTIVE_ENERGY = tuple(f"Énergie active/Phase {p}" for p in (1, 2, 3))
VOLTAGE = tuple(f"Tension/Phase {p}" for p in (1, 2, 3))
SIGNAL = "Force du signal radio DASH7"
BUTTON = "Bouton pressé"
LINK_OK = "État de la liaison Modbus - DASH7"


class DemoError(Exception):
    """Something the demo needs is missing or failed to start; the message says what."""


# ------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    duration_s: float | None
    sensors: int
    interval_s: float
    button_probability: float
    seed: int
    private: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
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


# ------------------------------------------------------------------------------- processes


@dataclass(slots=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    reported: bool = False


class Processes:
    """The processes the demo started, stopped in reverse order of starting."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], *, pipe_stdout: bool = False
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe_stdout else log_file,
                stderr=log_file,
                process_group=0,  # Ctrl-C reaches the demo only; it stops the others in order
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def newly_exited(self) -> list[Child]:
        """Children that exited by themselves since the last call."""
        gone = [c for c in self.children if not c.reported and c.process.poll() is not None]
        for child in gone:
            child.reported = True
        return gone

    def stop_all(self) -> None:
        for child in reversed(self.children):
            stop_child(child.process)
        self.children.clear()


def stop_child(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


# ------------------------------------------------------------------------------- infrastructure


@dataclass(frozen=True, slots=True)
class Infrastructure:
    redis_url: str
    mqtt_host: str
    mqtt_port: int
    notes: tuple[str, ...]


def port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=os.pathsep.join(SBIN_DIRS))
    return found


def wait_for_port(child: Child, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_answers(LOOPBACK, port, timeout_s=0.2):
        if child.process.poll() is not None or time.monotonic() > deadline:
            raise DemoError(f"{child.name} did not start; see {child.log_path}")
        time.sleep(0.1)


def start_redis(processes: Processes, binary: str) -> int:
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(processes.log_dir)]
    wait_for_port(processes.start("redis-server", argv, dict(os.environ)), port)
    return port


def start_mosquitto(processes: Processes, binary: str) -> int:
    port = free_port()
    config = processes.log_dir / "mosquitto.conf"
    config.write_text(f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n")
    child = processes.start("mosquitto", [binary, "-c", str(config)], dict(os.environ))
    wait_for_port(child, port)
    return port


def provide_infrastructure(processes: Processes, private: bool) -> Infrastructure:
    """The local Redis and Mosquitto when they answer, else private ones, else DemoError."""
    notes = []
    if not private and port_answers(LOOPBACK, DEFAULT_REDIS_PORT):
        redis_port = DEFAULT_REDIS_PORT
        notes.append(f"Redis: the one on {LOOPBACK}:{redis_port}")
    else:
        redis_port = start_redis(processes, _require_binary("redis-server", "Redis"))
        notes.append(f"Redis: private redis-server on {LOOPBACK}:{redis_port}")
    if not private and port_answers(LOOPBACK, DEFAULT_MQTT_PORT):
        mqtt_port = DEFAULT_MQTT_PORT
        notes.append(f"MQTT: the broker on {LOOPBACK}:{mqtt_port}")
    else:
        mqtt_port = start_mosquitto(processes, _require_binary("mosquitto", "an MQTT broker"))
        notes.append(f"MQTT: private mosquitto on {LOOPBACK}:{mqtt_port}")
    return Infrastructure(f"redis://{LOOPBACK}:{redis_port}/0", LOOPBACK, mqtt_port, tuple(notes))


def _require_binary(name: str, what: str) -> str:
    binary = find_binary(name)
    if binary is None:
        raise DemoError(
            f"no {what} answers on {LOOPBACK} and `{name}` is not installed: "
            f"install it (e.g. `apt-get install {name}`) or start one"
        )
    return binary


# ------------------------------------------------------------------------------- the gateway


def gateway_env(infra: Infrastructure, prefix: str) -> dict[str, str]:
    """This environment without GATEWAY_* variables, plus the demo's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_REDIS_URL=infra.redis_url,
        GATEWAY_STREAM_PREFIX=prefix,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL="info",
    )
    return env


def start_simulator(processes: Processes, options: Options, env: dict[str, str]) -> str:
    """Start gateway-sim on a free TCP port; its `socket://` URL."""
    argv = [
        str(BIN_DIR / "gateway-sim"),
        f"--listen=tcp://{LOOPBACK}:0",
        "--wait-for-client",
        f"--sensors={options.sensors}",
        f"--interval-s={options.interval_s}",
        f"--button-probability={options.button_probability}",
        f"--seed={options.seed}",
    ]
    child = processes.start("gateway-sim", argv, env, pipe_stdout=True)
    assert child.process.stdout is not None
    line = _read_line(child.process.stdout, START_TIMEOUT_S)
    if not line.startswith("listening: socket://"):
        raise DemoError(f"gateway-sim did not start; see {child.log_path}")
    return line.removeprefix("listening: ")


def _read_line(stream: IO[bytes], timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    return stream.readline().decode().strip() if ready else ""


def start_services(
    processes: Processes, env: dict[str, str], infra: Infrastructure, sim_url: str
) -> None:
    tag = str(os.getpid())
    services: dict[str, dict[str, str]] = {
        "gateway-ingest": {"GATEWAY_SERIAL_PORT": sim_url},
        "gateway-decoder": {"GATEWAY_CONSUMER_NAME": f"demo-decoder-{tag}"},
        "gateway-publisher": {
            "GATEWAY_CONSUMER_NAME": f"demo-publisher-{tag}",
            "GATEWAY_MQTT_HOST": infra.mqtt_host,
            "GATEWAY_MQTT_PORT": str(infra.mqtt_port),
            "GATEWAY_MQTT_TLS": "false",
            "GATEWAY_MQTT_CLIENT_ID": f"demo-gateway-{tag}",
            "GATEWAY_PROJECT_ID": PROJECT_ID,
            "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
            "GATEWAY_TOPIC_ROOT": TOPIC_ROOT,
            "GATEWAY_DOWNLINK": "true",  # the demo's DCMD (DownlinkDemo)
        },
    }
    for name, extra in services.items():
        executable = BIN_DIR / name
        if not executable.exists():
            raise DemoError(f"{executable} is missing: run `make install`")
        health = {"GATEWAY_HEALTH_FILE": str(processes.log_dir / f"{name}-health.json")}
        processes.start(name, [str(executable)], {**env, **extra, **health})


def gateway_counts(redis_url: str, prefix: str) -> dict[str, int]:
    """Entries ever added to the frames, records and dead streams (trimming does not matter)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    counts = {}
    try:
        for stream in ("frames", "records", "dead"):
            try:
                counts[stream] = int(client.xinfo_stream(f"{prefix}:{stream}")["entries-added"])
            except redis.ResponseError:  # the stream was never created
                counts[stream] = 0
    finally:
        client.close()
    return counts


def delete_keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


# ------------------------------------------------------------------------------- MQTT


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # DBIRTH / DDATA
    device_id: str
    metrics: dict[str, Any]
    timestamp_ms: int | None


def parse_message(topic: str, payload: bytes) -> Message | None:
    """A DBIRTH or DDATA of the demo's project, or None for anything else."""
    levels = topic.split("/")
    if len(levels) != 5 or levels[3] != EDGE_NODE_ID or levels[2] not in {"DBIRTH", "DDATA"}:
        return None
    try:
        metrics = json.loads(payload)["metrics"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(metrics, list):
        return None
    values: dict[str, Any] = {
        str(m["name"]): m.get("value") for m in metrics if isinstance(m, dict) and "name" in m
    }
    stamps = [m["timestamp"] for m in metrics if isinstance(m, dict) and "timestamp" in m]
    return Message(levels[2], levels[4], values, max(stamps, default=None))


class Subscriber:
    """Receives `mqtts/demo/#` on paho's network thread and hands messages over a queue."""

    def __init__(self, infra: Infrastructure) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self.stale_retained = 0
        self.birth_topics: set[str] = set()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"demo-viewer-{os.getpid()}"
        )
        self._subscribed = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        where = f"MQTT broker {infra.mqtt_host}:{infra.mqtt_port}"
        try:
            self._client.connect(infra.mqtt_host, infra.mqtt_port, keepalive=30)
        except OSError as exc:
            raise DemoError(f"cannot connect to the {where}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):  # see the very first DBIRTH
            self.close()
            raise DemoError(f"no subscription acknowledged by the {where}")

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"{TOPIC_ROOT}/{PROJECT_ID}/#", qos=1)

    def _on_subscribe(self, *_: object) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:  # kept by the broker from an earlier run, not sent by this one
            self.stale_retained += 1
            return
        message = parse_message(msg.topic, bytes(msg.payload))
        if message is not None:
            if message.kind == "DBIRTH":
                self.birth_topics.add(msg.topic)
            self.messages.put(message)

    def close(self) -> None:
        """Clear the retained DBIRTHs of this run, then disconnect."""
        for topic in sorted(self.birth_topics):
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more
                self._client.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()


# ------------------------------------------------------------------------------- display


@dataclass(slots=True)
class DeviceView:
    last_reading_ms: int | None = None
    active_wh: tuple[Any, ...] = ()
    voltage_v: tuple[Any, ...] = ()
    link_budget: Any = None
    button: Any = None
    meter_ok: Any = None
    ddata: int = 0
    births: int = 0


@dataclass(slots=True)
class Dashboard:
    """What has been received, per device."""

    devices: dict[str, DeviceView] = field(default_factory=dict)
    ddata: int = 0
    births: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    notices: list[str] = field(default_factory=list)

    def add(self, message: Message) -> None:
        view = self.devices.setdefault(message.device_id, DeviceView())
        if message.kind == "DBIRTH":
            self.births += 1
            view.births += 1
            return
        self.ddata += 1
        view.ddata += 1
        values = message.metrics
        view.last_reading_ms = message.timestamp_ms
        view.link_budget = values.get(SIGNAL, view.link_budget)
        view.meter_ok = values.get(LINK_OK, view.meter_ok)
        view.button = values.get(BUTTON, view.button)
        if ACTIVE_ENERGY[0] in values:
            view.active_wh = tuple(values.get(name) for name in ACTIVE_ENERGY)
            view.voltage_v = tuple(values.get(name) for name in VOLTAGE)

    def render(self) -> Group:
        table = Table(title="SCorp-io messages (mqtts/demo/#)", title_justify="left")
        for title in ("device", "last reading", "active energy Wh (P1 / P2 / P3)", "voltage V"):
            table.add_column(title)
        for title in ("link budget", "meter", "button", "DDATA", "DBIRTH"):
            table.add_column(title, justify="right")
        for device_id, view in sorted(self.devices.items()):
            table.add_row(
                device_id,
                _clock(view.last_reading_ms),
                " / ".join(f"{v:,}" if isinstance(v, int) else "?" for v in view.active_wh),
                " / ".join(str(v) for v in view.voltage_v),
                "" if view.link_budget is None else f"{view.link_budget} dB",
                _flag(view.meter_ok, "ok", "[red]stale[/red]"),
                _flag(view.button, "[bold yellow]pressed[/]", "released"),
                str(view.ddata),
                "✓" if view.births else "[red]none[/red]",
            )
        elapsed = time.monotonic() - self.started
        footer = Text(
            f"{self.ddata} DDATA, {self.births} DBIRTH in {elapsed:.0f} s — Ctrl-C stops",
            style="dim",
        )
        return Group(table, footer, *(Text(n, style="bold red") for n in self.notices))


def _clock(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return ""
    return datetime.fromtimestamp(timestamp_ms / 1000).astimezone().strftime("%H:%M:%S.%f")[:-3]


def _flag(value: Any, true_text: str, false_text: str) -> str:
    if value is None:
        return ""
    return true_text if value else false_text


def plain_line(message: Message) -> str:
    """One line per message, for a log file or a pipe."""
    values = message.metrics
    parts = [_clock(message.timestamp_ms) or "-", message.kind, message.device_id]
    if message.kind == "DDATA":
        if ACTIVE_ENERGY[0] in values:
            parts.append("active_wh=" + ",".join(str(values.get(n)) for n in ACTIVE_ENERGY))
            parts.append("voltage_v=" + ",".join(str(values.get(n)) for n in VOLTAGE))
        for label, name in (("button", BUTTON), ("meter_ok", LINK_OK), ("link_budget", SIGNAL)):
            if name in values:
                parts.append(f"{label}={values[name]}")
    else:
        parts.append(f"metrics={len(values)}")
    return " ".join(parts)


# ------------------------------------------------------------------------------- the downlink


class DownlinkDemo:
    """Once the first reading is in, sends one DCMD (a new interval) to that device as SCorp-io
    would, then shows its command's states (from Redis) until it ends."""

    INTERVAL_S = 10

    def __init__(self, infra: Infrastructure, prefix: str, console: Console) -> None:
        self._infra = infra
        self._prefix = prefix
        self._console = console
        self._sent_at: float | None = None
        self._state = ""
        self.result = ""

    def step(self, dashboard: Dashboard) -> None:
        if self._sent_at is None:
            device = next((d for d, v in sorted(dashboard.devices.items()) if v.ddata), None)
            if device is not None:
                self._send(device)
            return
        if self.result:
            return
        client = redis.Redis.from_url(
            self._infra.redis_url, socket_timeout=2, decode_responses=True
        )
        try:
            newest: Any = client.zrevrange(f"{self._prefix}:commands:ids", 0, 0)
            command: Any = client.hgetall(f"{self._prefix}:command:{newest[0]}") if newest else {}
        finally:
            client.close()
        state = command.get("state", "")
        if not state or state == self._state:
            return
        self._state = state
        stamps = [("queued", "created_at"), ("sent", "sent_at")]
        stamps += [("acknowledged", "acknowledged_at"), (state, "ended_at")]
        steps = [
            f"{name} +{float(command[key]) - self._sent_at:.2f} s"
            for name, key in stamps
            if key in command
        ]
        reason = f" ({command['reason']})" if command.get("reason") else ""
        line = f"COMMAND {command['id']} {state}{reason}: " + ", ".join(steps)
        say(self._console, line)
        if state in {"confirmed", "failed", "expired", "rejected"}:
            self.result = line

    def _send(self, device: str) -> None:
        topic = f"{TOPIC_ROOT}/{PROJECT_ID}/DCMD/{EDGE_NODE_ID}/{device}"
        metric = {"name": "Intervalle de mesure", "dataType": "Integer", "value": self.INTERVAL_S}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-scorp-{os.getpid()}")
        client.connect(self._infra.mqtt_host, self._infra.mqtt_port, keepalive=30)
        client.loop_start()
        try:
            payload = json.dumps({"metrics": [metric]}, ensure_ascii=False).encode()
            self._sent_at = time.time()
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
        finally:
            client.loop_stop()
            client.disconnect()
        say(self._console, f"DCMD {topic}: Intervalle de mesure = {self.INTERVAL_S} s")


# ------------------------------------------------------------------------------- running


def say(console: Console, text: str) -> None:
    """A plain line: no markup, no highlighting, no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def next_message(subscriber: Subscriber, deadline: float | None) -> Message | None:
    timeout_s = REFRESH_S if deadline is None else min(REFRESH_S, deadline - time.monotonic())
    try:
        return subscriber.messages.get(timeout=max(0.0, timeout_s))
    except queue.Empty:
        return None


def check_children(processes: Processes, dashboard: Dashboard, console: Console) -> None:
    for child in processes.newly_exited():
        notice = f"{child.name} exited with code {child.process.returncode}; see {child.log_path}"
        dashboard.notices.append(notice)
        if not console.is_terminal:
            say(console, notice)


def watch(
    subscriber: Subscriber,
    processes: Processes,
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
                message = next_message(subscriber, deadline)
                check_children(processes, dashboard, console)
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
    infra_processes = Processes(log_dir)
    gateway_processes = Processes(log_dir)
    with contextlib.ExitStack() as stack:
        stack.callback(infra_processes.stop_all)
        infra = provide_infrastructure(infra_processes, options.private)
        for note in infra.notes:
            say(console, note)
        subscriber = Subscriber(infra)
        stack.callback(subscriber.close)
        stack.enter_context(demo_keys(infra.redis_url, prefix, console))
        stack.callback(gateway_processes.stop_all)
        env = gateway_env(infra, prefix)
        sim_url = start_simulator(gateway_processes, options, env)
        start_services(gateway_processes, env, infra, sim_url)
        say(console, f"gateway-sim on {sim_url}, stream prefix {prefix}")
        downlink = DownlinkDemo(infra, prefix, console)
        dashboard = watch(subscriber, gateway_processes, options, console, downlink)
        gateway_processes.stop_all()
        counts = gateway_counts(infra.redis_url, prefix)
        print_summary(console, dashboard, counts, subscriber.stale_retained)
        failed = bool(dashboard.notices) or (options.duration_s is not None and not dashboard.ddata)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored
    console = Console()
    try:
        return run(options, console)
    except DemoError as exc:
        say(Console(stderr=True), f"demo: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
