"""`make bench`: what the gateway does on this machine, measured in one run.

Starts a private `redis-server` and a private `mosquitto` on free loopback ports, the real
services from this virtualenv (gateway-ingest on a pty that plays the modem's serial line,
one gateway-decoder, gateway-publisher), and a `mosquitto_sub` subscriber that stamps each
DDATA as it arrives. Then measures, in order:

1. decoder: the fast decoding path against the reference ALP library (d7a), in this process;
2. end to end: a burst of energy frames written into the pty as fast as it takes them, to the
   last DDATA received by the subscriber; every frame must arrive exactly once;
3. latency at the serial line rate: per frame, last byte written -> DDATA received, with the
   stages in between (ingest's receive stamp, the frame's and the record's stream entry ids);
4. resident memory of every service process;
5. backlog drain: frames added straight to `{p}:frames` while decoder and publisher are
   stopped, then the time for them to come out as DDATA.

Benchmarks report, they do not pass or fail: the exit code is 0 unless something could not be
started or a service died. Ctrl-C stops everything this script started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tty
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway_common.entries import FrameEntry, Record, decode_frame, decode_record, encode
from gateway_common.records import decode_alp, decode_entry
from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_dash7 import (
    D7Status,
    EnergyFile,
    MessageType,
    encode_frame,
    encode_unsolicited,
    parse_unsolicited,
)

# The d7a oracle is a test module of the codec (d7a is a dev dependency), not installed code.
sys.path.append(str(Path(__file__).resolve().parents[1] / "packages" / "dash7" / "tests"))
from reference_alp import parse_reference

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

LOOPBACK = "127.0.0.1"
BIN_DIR = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("GATEWAY_VECTORS", str(ROOT / "tests" / "vectors" / "frames.json")))
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
PREFIX = "bench"
TOPIC_ROOT = "bench"
PROJECT_ID = "bench"
EDGE_NODE_ID = "bench-node"
ACTIVE_PHASE_1 = "Énergie active/Phase 1"
DEVICES = 16
BAUD = 115200
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
START_TIMEOUT_S = 15.0
STALL_TIMEOUT_S = 30.0
POLL_S = 0.05
WRITE_CHUNK = 4096
BACKLOG_PIPELINE = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICES = ("gateway-ingest", "gateway-decoder", "gateway-publisher")

# Issue 4's targets, printed next to what was measured.
TARGET_DECODER_RATIO = 500
TARGET_E2E_RATIO = 30
TARGET_P99_MS = 20.0
TARGET_RSS_MB = 60.0
TARGET_INGEST_MS = 1.0
#: d7a's rate on the energy frame as issue 4 states it ("about 150 frames per second").
ISSUE_D7A_RATE = 150.0


class BenchError(Exception):
    """Something the benchmark needs is missing or failed; the message says what."""


# ------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool
    frames: int
    latency_frames: int
    backlog_frames: int
    d7a_seconds: float
    redis_aof: bool
    keep_logs: bool
    py_spy: str | None
    broker_inflight: int | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    doc = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="a shorter run (smaller counts)")
    parser.add_argument("--frames", type=int, metavar="N", help="end-to-end burst (20000)")
    parser.add_argument("--latency-frames", type=int, metavar="N", help="paced frames (1500)")
    parser.add_argument("--backlog", type=int, metavar="N", help="backlog entries (100000)")
    parser.add_argument(
        "--redis-aof",
        action="store_true",
        help="private Redis with AOF on (appendfsync everysec: docker-compose.yml's cheaper "
        "option; it defaults to always)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy binary: profile the services during the burst and the backlog drain",
    )
    parser.add_argument(
        "--broker-inflight",
        type=int,
        metavar="N",
        help="mosquitto max_inflight_messages, its MQTT v5 Receive Maximum (default: "
        "mosquitto's own, 20)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    options = Options(
        quick=quick,
        frames=args.frames or (3000 if quick else 20000),
        latency_frames=args.latency_frames or (300 if quick else 1500),
        backlog_frames=args.backlog or (10000 if quick else 100000),
        d7a_seconds=1.0 if quick else 3.0,
        redis_aof=bool(args.redis_aof),
        keep_logs=bool(args.keep_logs),
        py_spy=args.py_spy,
        broker_inflight=args.broker_inflight,
    )
    if min(options.frames, options.latency_frames, options.backlog_frames) <= 0:
        parser.error("counts must be positive")
    return options


# ------------------------------------------------------------------------------- output


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


# ------------------------------------------------------------------------------- machine


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    out = (done.stdout or done.stderr).strip().splitlines()
    return out[0] if out else "unknown"


def describe_machine(redis_bin: str, mosquitto_bin: str) -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln]
    mhz = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("cpu MHz")]
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8").splitlines()
    mem_total = next((ln.split(":", 1)[1].strip() for ln in meminfo if "MemTotal" in ln), "?")
    load = os.getloadavg()
    return [
        (
            "CPU",
            f"{models[0] if models else platform.processor()}"
            + (f" @ {mhz[0]} MHz" if mhz else ""),
        ),
        ("cores", f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})"),
        ("memory", mem_total),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Redis", _first_line([redis_bin, "--version"])),
        ("Mosquitto", _first_line([mosquitto_bin, "-h"])),
        ("load average at start", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"),
    ]


# ------------------------------------------------------------------------------- processes


@dataclass(slots=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class Processes:
    """Every process this script started; stopped in reverse order."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.children: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], stdout: Path | None = None
    ) -> Child:
        log_path = self.work_dir / f"{name}.log"
        with log_path.open("ab") as log, contextlib.ExitStack() as stack:
            out = stack.enter_context(stdout.open("wb")) if stdout is not None else log
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                process_group=0,  # Ctrl-C reaches this script only; it stops the others
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if child.process.poll() is None:
            child.process.send_signal(sig)
            try:
                child.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)

    def check_alive(self, *children: Child) -> None:
        for child in children:
            if child.process.poll() is not None:
                tail = child.log()[-2000:]
                raise BenchError(f"{child.name} exited ({child.process.returncode}):\n{tail}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(processes: Processes, child: Child, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_answers(port):
        processes.check_alive(child)
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} does not answer on port {port}")
        time.sleep(POLL_S)


def bytecode_state() -> str:
    """Whether the services import precompiled bytecode, as in the image (it changes their RSS)."""
    import paho.mqtt.client as paho_client  # noqa: PLC0415  # only its location is wanted

    source = Path(paho_client.__file__)
    tag = sys.implementation.cache_tag
    compiled = (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").exists()
    if compiled:
        return "precompiled in the virtualenv (make install, like the image)"
    return (
        "NOT precompiled: each service compiles its imports at start (about 15 MB more RSS); "
        "`make install` precompiles"
    )


def find_binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))
    if found is None:
        raise BenchError(f"`{name}` is not installed (e.g. `apt-get install {name}`)")
    return found


@dataclass(frozen=True, slots=True)
class Infrastructure:
    redis: Child
    redis_url: str
    mosquitto: Child
    mqtt_port: int


def start_infrastructure(
    processes: Processes, redis_bin: str, mosquitto_bin: str, options: Options
) -> Infrastructure:
    redis_port = free_port()
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "everysec"]
        if options.redis_aof
        else ["--appendonly", "no"]
    )
    argv = [redis_bin, "--port", str(redis_port), "--bind", LOOPBACK, "--save", "", *persistence]
    argv += ["--dir", str(processes.work_dir)]
    redis_child = processes.start("redis-server", argv, dict(os.environ))
    wait_for_port(processes, redis_child, redis_port)
    mqtt_port = free_port()
    config = processes.work_dir / "mosquitto.conf"
    config.write_text(
        f"listener {mqtt_port} {LOOPBACK}\nallow_anonymous true\npersistence false\n"
        # The subscriber must see every message: no per-client queue limit on the broker side.
        "max_queued_messages 0\n"
        + (
            f"max_inflight_messages {options.broker_inflight}\n"
            if options.broker_inflight is not None
            else ""
        ),
        encoding="utf-8",
    )
    mosquitto = processes.start("mosquitto", [mosquitto_bin, "-c", str(config)], dict(os.environ))
    wait_for_port(processes, mosquitto, mqtt_port)
    return Infrastructure(redis_child, f"redis://{LOOPBACK}:{redis_port}/0", mosquitto, mqtt_port)


# ------------------------------------------------------------------------------- the modem line


class ModemLine:
    """A pty pair: this script writes the modem's bytes on the master; ingest opens `path`."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view[:WRITE_CHUNK]) :]

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# ------------------------------------------------------------------------------- frames


def device_address(seq: int) -> bytes:
    return bytes.fromhex("be4c0b0000000000")[:7] + bytes((seq % DEVICES,))


def energy_alp(seq: int) -> bytes:
    """An EnergyFile whose phase-1 active energy is `seq`: each DDATA names its frame."""
    energy = EnergyFile(
        apparent_energy_vah=(1_234_567 + seq, 2_345_678, 3_456_789),
        active_energy_wh=(seq, 1_000_000, 2_000_000),
        current_ma=(1500, 1600, 1700),
        voltage_v=(230, 231, 229),
    )
    status = D7Status(address=device_address(seq), sequence=seq % 256)
    return encode_unsolicited(52, energy.encode(), status)


def serial_frames(first_seq: int, count: int, first_counter: int) -> list[tuple[int, bytes]]:
    return [
        (
            first_seq + i,
            encode_frame(
                (first_counter + i) % 256, MessageType.ALP_DATA, energy_alp(first_seq + i)
            ),
        )
        for i in range(count)
    ]


def vector_energy_alp() -> tuple[bytes, str]:
    """The test vector `energy_uid` (the issue's "energy frame"), or one built here."""
    try:
        cases = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
        case = next(c for c in cases if c["name"] == "energy_uid")
        frame = bytes.fromhex(case["frame_hex"])
    except (OSError, ValueError, KeyError, StopIteration):
        return energy_alp(1), "energy frame built by bench/run.py"
    return frame[7:], f"test vector energy_uid ({len(frame)} bytes on the line)"


# ------------------------------------------------------------------------------- the subscriber


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float
    seq: int


class Subscriber:
    """`mosquitto_sub` on the private broker, one line per DDATA: arrival time, topic, payload."""

    def __init__(self, processes: Processes, binary: str, port: int, name: str) -> None:
        self._processes = processes
        self.out_path = processes.work_dir / f"{name}.out"
        self._probe_topic = f"{TOPIC_ROOT}/probe/{name}"
        argv = [
            *(["stdbuf", "-oL"] if shutil.which("stdbuf") else []),
            binary,
            "-V",
            "mqttv5",
            "-h",
            LOOPBACK,
            "-p",
            str(port),
            "-q",
            "1",
            "-i",
            f"bench-sub-{name}-{os.getpid()}",
            "-t",
            f"{TOPIC_ROOT}/+/DDATA/#",
            "-t",
            self._probe_topic,
            "-F",
            "%U %t %p",
        ]
        self.child = processes.start(name, argv, dict(os.environ), stdout=self.out_path)
        self._offset = 0
        self._tail = b""
        self.ddata = 0
        self._port = port

    def wait_subscribed(self, pub_binary: str) -> None:
        """Publish probes until one comes back: the subscription is in place."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            subprocess.run(
                [
                    pub_binary,
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(self._port),
                    "-t",
                    self._probe_topic,
                    "-m",
                    "probe",
                    "-q",
                    "1",
                ],
                check=False,
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
            time.sleep(0.1)
            if self.out_path.read_bytes().count(self._probe_topic.encode()):
                return
            self._processes.check_alive(self.child)
            if time.monotonic() > deadline:
                raise BenchError("the subscriber never saw its probe message")

    def poll(self) -> int:
        """Count the DDATA lines written since the last poll; the total so far."""
        with self.out_path.open("rb") as out:
            out.seek(self._offset)
            data = out.read()
        self._offset += len(data)
        data = self._tail + data
        complete, _, self._tail = data.rpartition(b"\n")
        self.ddata += complete.count(b"/DDATA/")
        return self.ddata

    def wait_for(self, count: int, watched: Sequence[Child]) -> bool:
        """Wait until `count` DDATA arrived; False when none arrived for STALL_TIMEOUT_S."""
        last, last_change = self.poll(), time.monotonic()
        while last < count:
            time.sleep(POLL_S)
            self._processes.check_alive(*watched)
            now_count = self.poll()
            if now_count != last:
                last, last_change = now_count, time.monotonic()
            elif time.monotonic() - last_change > STALL_TIMEOUT_S:
                return False
        return True

    def deliveries(self) -> list[Delivery]:
        """Every DDATA received, with its frame's sequence number (read after the run)."""
        found: list[Delivery] = []
        for line in self.out_path.read_bytes().splitlines():
            stamp, _, rest = line.partition(b" ")
            topic, _, payload = rest.partition(b" ")
            if b"/DDATA/" not in topic:
                continue
            metrics = json.loads(payload)["metrics"]
            seq = next(m["value"] for m in metrics if m["name"] == ACTIVE_PHASE_1)
            found.append(Delivery(float(stamp), int(seq)))
        return found

    def stop(self) -> None:
        self._processes.stop(self.child)


# ------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0])
    return values


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    with Path("/proc/stat").open(encoding="utf-8") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU used by each watched process, and by the rest of the machine, between start/stop."""

    def __init__(self, children: Sequence[Child]) -> None:
        self._children = list(children)
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self._machine0 = (0.0, 0.0)
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self.machine_busy = 0.0
        self.steal = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {c.name: cpu_seconds(c.pid) for c in self._children}
        self._start["bench/run.py itself"] = cpu_seconds(os.getpid())
        self._machine0 = machine_cpu()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._t0
        busy, steal = machine_cpu()
        self.machine_busy, self.steal = busy - self._machine0[0], steal - self._machine0[1]
        self.used = {
            c.name: cpu_seconds(c.pid) - self._start[c.name]
            for c in self._children
            if c.process.poll() is None
        }
        self.used["bench/run.py itself"] = (
            cpu_seconds(os.getpid()) - self._start["bench/run.py itself"]
        )

    def rows(self) -> list[tuple[str, str, str]]:
        rows = [
            (name, f"{used:.2f}", f"{100 * used / self.wall:.0f} %")
            for name, used in sorted(self.used.items(), key=lambda kv: -kv[1])
        ]
        others = max(0.0, self.machine_busy - sum(self.used.values()))
        cores = os.cpu_count() or 1
        rows += [
            (
                "other processes (not started by the bench)",
                f"{others:.2f}",
                f"{100 * others / self.wall:.0f} %",
            ),
            (
                f"whole machine busy ({cores} cores = {100 * cores} %)",
                f"{self.machine_busy:.2f}",
                f"{100 * self.machine_busy / self.wall:.0f} %",
            ),
            ("steal (hypervisor)", f"{self.steal:.2f}", f"{100 * self.steal / self.wall:.0f} %"),
        ]
        return rows


# ------------------------------------------------------------------------------- profiles


class Profiler:
    """Optional py-spy recordings of the services (raw collapsed stacks), summarised after."""

    def __init__(self, processes: Processes, binary: str | None, label: str) -> None:
        self._processes = processes
        self._binary = binary
        self._label = label
        self._running: list[tuple[Child, Path, str]] = []

    def start(self, children: Sequence[Child]) -> None:
        if self._binary is None:
            return
        for child in children:
            out = self._processes.work_dir / f"profile-{self._label}-{child.name}.txt"
            argv = [
                self._binary,
                "record",
                "--pid",
                str(child.pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "--gil",
                "--output",
                str(out),
            ]
            spy = self._processes.start(f"py-spy-{self._label}-{child.name}", argv, {**os.environ})
            self._running.append((spy, out, child.name))

    def stop_and_report(self) -> None:
        for spy, out, name in self._running:
            self._processes.stop(spy, signal.SIGINT, timeout_s=20)
            if out.exists():
                summarise_profile(out, f"{self._label}: {name}")
        self._running.clear()


def summarise_profile(path: Path, title: str, top: int = 10) -> None:
    """Self time by function, and time inside a few functions of the gateway."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames or any("importlib" in f for f in frames):
            continue  # start-up (imports) is not what is being measured
        total += count
        leaf[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return
    rows = [(f"{100 * n / total:.1f} %", name) for name, n in leaf.most_common(top)]
    table(
        f"profile, {title}: self time ({total} samples holding the GIL, all threads)",
        ("share", "where"),
        rows,
    )
    ours = [
        (f"{100 * n / total:.1f} %", name)
        for name, n in inclusive.most_common()
        if "gateway_" in name or "redis/" in name or "paho" in name
    ][:top]
    table(f"profile, {title}: inclusive time", ("share", "function"), ours)


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`, keeping the package for ours."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


# ------------------------------------------------------------------------------- the gateway


class Gateway:
    """The three services as processes on the private Redis and broker."""

    def __init__(self, processes: Processes, infra: Infrastructure, line: ModemLine) -> None:
        self._processes = processes
        self.infra = infra
        self.line = line
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env.update(
            GATEWAY_REDIS_URL=infra.redis_url,
            GATEWAY_STREAM_PREFIX=PREFIX,
            GATEWAY_LOG_FORMAT="json",
            GATEWAY_LOG_LEVEL="info",
        )
        self.children: dict[str, Child] = {}
        self.ingest_metrics_port = free_port()

    def start(self, name: str) -> Child:
        extra: dict[str, str] = {
            "gateway-ingest": {
                "GATEWAY_SERIAL_PORT": self.line.path,
                "GATEWAY_METRICS_PORT": str(self.ingest_metrics_port),
            },
            "gateway-decoder": {"GATEWAY_CONSUMER_NAME": "bench-decoder-1"},
            "gateway-publisher": {
                "GATEWAY_CONSUMER_NAME": "bench-publisher",
                "GATEWAY_MQTT_HOST": LOOPBACK,
                "GATEWAY_MQTT_PORT": str(self.infra.mqtt_port),
                "GATEWAY_MQTT_TLS": "false",
                "GATEWAY_MQTT_CLIENT_ID": f"bench-gateway-{os.getpid()}",
                "GATEWAY_PROJECT_ID": PROJECT_ID,
                "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
                "GATEWAY_TOPIC_ROOT": TOPIC_ROOT,
            },
        }[name]
        executable = BIN_DIR / name
        if not executable.exists():
            raise BenchError(f"{executable} is missing: run `make install`")
        child = self._processes.start(name, [str(executable)], {**self.env, **extra})
        self.children[name] = child
        return child

    def stop(self, name: str) -> None:
        self._processes.stop(self.children.pop(name))

    def wait_log(self, name: str, event: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        child = self.children[name]
        while f'"{event}"' not in child.log():
            self._processes.check_alive(child)
            if time.monotonic() > deadline:
                raise BenchError(f"{name} never logged {event}:\n{child.log()[-2000:]}")
            time.sleep(POLL_S)

    def running(self) -> list[Child]:
        return list(self.children.values())


def log_value(child: Child, event: str, key: str) -> Any:
    for line in child.log().splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get("event") == event:
                return obj.get(key)
    return None


def id_seconds(entry_id: bytes | str) -> float:
    """The epoch time (s, ms resolution) in a stream entry id."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0]) / 1000


def stream_entries(
    client: redis.Redis, key: str, after: str = "-"
) -> Iterator[tuple[bytes, bytes]]:
    """(entry id, field d) of every entry, in pages."""
    start = after
    while True:
        page: Any = client.xrange(key, min=start, max="+", count=5000)
        if not page:
            return
        for entry_id, fields in page:
            yield entry_id, fields.get(ENTRY_FIELD, b"")
        start = "(" + page[-1][0].decode()


def group_backlog(client: redis.Redis, key: str, group: str) -> int:
    groups: Any = client.xinfo_groups(key)
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            return int(info.get("pending") or 0) + int(info.get("lag") or 0)
    return -1


def command_calls(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Redis's own count of each command: name -> (calls, µs spent)."""
    stats: Any = client.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for key, value in stats.items()
    }


def command_rows(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], frames: int
) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, (calls, usec) in sorted(after.items(), key=lambda kv: -kv[1][0]):
        calls_before, usec_before = before.get(name, (0, 0))
        done = calls - calls_before
        if done <= 0 or name in {"info", "ping", "client|setinfo", "hello"}:
            continue
        spent = usec - usec_before
        rows.append((name, f"{done:,}", f"{done / frames:.3f}", f"{spent / done:.1f}"))
    return rows


def seq_of_record(data: bytes) -> tuple[int, str]:
    record = decode_record(data)
    value = record.fields["active_energy_wh"]
    assert isinstance(value, list)
    return value[0], record.frame_id


def seq_of_frame(data: bytes) -> tuple[int, float]:
    frame = decode_frame(data)
    outcome = decode_alp("0-0", frame.alp, frame.received_at)
    if not isinstance(outcome, Record):
        raise BenchError(f"a benchmark frame did not decode: {outcome.reason}")
    value = outcome.fields["active_energy_wh"]
    assert isinstance(value, list)
    return value[0], frame.received_at


# ------------------------------------------------------------------------------- 1. decoder


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


@dataclass(slots=True)
class Results:
    d7a_rate: float = 0.0
    entry_rate: float = 0.0
    e2e_rate: float = 0.0
    e2e_complete: bool = False
    p99_ms: float = 0.0
    ingest_p99_ms: float = 0.0
    in_redis_p99_ms: float = 0.0
    handoff_within_1ms: str = "-"
    rss_mb: dict[str, float] = field(default_factory=dict)
    backlog_s: float = 0.0


def bench_decoder(options: Options, results: Results) -> None:
    alp, source = vector_energy_alp()
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
        "d7a": (lambda: parse_reference(alp), options.d7a_seconds / 3),
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
        ("d7a: Parser().parse (reference_alp.parse_reference)", f"{d7a:,.0f}", "1", "-"),
        ("fast: alp.parse_unsolicited (ALP only)", f"{parse:,.0f}", f"{parse / d7a:,.0f}", "-"),
        (
            "fast: decoding.decode_entry (msgpack entry + ALP + file + Record)",
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


# ------------------------------------------------------------------------------- 2. end to end


def bench_end_to_end(ctx: Context, first_seq: int) -> None:
    options, results, gateway, client = ctx.options, ctx.results, ctx.gateway, ctx.client
    sub_factory = ctx.sub_factory
    n = options.frames
    frames = serial_frames(first_seq, n, first_counter=1)
    data = b"".join(frame for _, frame in frames)
    sub = sub_factory("sub-e2e")
    keys = StreamKeys(PREFIX)
    frames_before = (
        client.xinfo_stream(keys.frames)["last-generated-id"]
        if client.exists(keys.frames)
        else b"0-0"
    )
    records_before = (
        client.xinfo_stream(keys.records)["last-generated-id"]
        if client.exists(keys.records)
        else b"0-0"
    )
    services = gateway.running()
    meter = CpuMeter([*services, gateway.infra.redis, gateway.infra.mosquitto, sub.child])
    profiler = Profiler(gateway._processes, options.py_spy, "burst")  # noqa: SLF001
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
        (id_seconds(i) for i, _ in stream_entries(client, keys.frames, "(" + _s(frames_before))),
        default=float("nan"),
    )
    last_record = max(
        (id_seconds(i) for i, _ in stream_entries(client, keys.records, "(" + _s(records_before))),
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


#: A bare paho-mqtt client in a process of its own: QoS 1 publishes of a DDATA-sized payload
#: with the publisher's window, PUBACKs counted in on_publish. The most a publisher built on
#: paho (loop_start thread) can do here; nothing subscribes to its topic.
PAHO_FLOOR = """
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, count, window, size = (int(v) for v in sys.argv[1:5])
client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.max_inflight_messages_set(window)
room, acked = threading.Semaphore(window), [0]
done, connected = threading.Event(), threading.Event()
def on_publish(*_args):
    acked[0] += 1
    room.release()
    if acked[0] == count:
        done.set()
client.on_publish = on_publish
client.on_connect = lambda *_a: connected.set()
client.connect("127.0.0.1", port)
client.loop_start()
connected.wait(10)
payload = b"x" * size
started, cpu = time.perf_counter(), time.process_time()
for _ in range(count):
    room.acquire()
    client.publish("bench-floor/p/DDATA/e/d", payload, qos=1)
done.wait(300)
print(count / (time.perf_counter() - started), (time.process_time() - cpu) / count)
client.loop_stop()
"""


def paho_floor(ctx: Context, count: int, window: int, size: int) -> tuple[float, float]:
    """(messages/s, CPU s per message) of the bare paho publisher."""
    argv = [sys.executable, "-c", PAHO_FLOOR, str(ctx.gateway.infra.mqtt_port), str(count)]
    argv += [str(window), str(size)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    try:
        rate_text, cpu_text = done.stdout.split()
        return float(rate_text), float(cpu_text)
    except ValueError as exc:
        raise BenchError(f"the paho floor failed: {done.stderr[-2000:]}") from exc


def _s(entry_id: Any) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


# ------------------------------------------------------------------------------- 3. latency

#: A bare Python reader on a second pty: how soon any Python process here sees a frame's last
#: byte (blocking os.read, no pyserial, no threads). Prints one receive time per frame.
FLOOR_READER = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOCTTY)
frames, size = int(sys.argv[2]), int(sys.argv[3])
stamps, held = [], 0
while len(stamps) < frames:
    held += len(os.read(fd, 4096))
    now = time.time()
    while held >= size:
        held -= size
        stamps.append(now)
print("\\n".join(repr(s) for s in stamps))
"""


#: A Redis round trip from a Python client, paced like the frames: the floor under "frame XADDed"
#: on this machine (an idle machine wakes Redis and the client from sleep at every frame).
PING_FLOOR = """
import sys, time, redis
client = redis.Redis.from_url(sys.argv[1])
count, interval = int(sys.argv[2]), float(sys.argv[3])
client.ping()
due = time.monotonic()
for _ in range(count):
    due += interval
    time.sleep(max(0.0, due - time.monotonic()))
    start = time.perf_counter()
    client.ping()
    print(repr(time.perf_counter() - start))
"""


class PingFloor:
    def __init__(self, processes: Processes, redis_url: str, count: int, interval_s: float) -> None:
        self.out = processes.work_dir / "ping-floor.out"
        argv = [sys.executable, "-c", PING_FLOOR, redis_url, str(count), repr(interval_s)]
        self._processes = processes
        self.child = processes.start("ping-floor", argv, dict(os.environ), stdout=self.out)

    def round_trips(self, timeout_s: float) -> list[float]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.process.wait(timeout_s)
        self._processes.stop(self.child)
        return [float(v) for v in self.out.read_text(encoding="utf-8").split()]


class FloorReader:
    def __init__(self, processes: Processes, frames: int, size: int) -> None:
        self.line = ModemLine()
        self.out = processes.work_dir / "floor.out"
        argv = [sys.executable, "-c", FLOOR_READER, self.line.path, str(frames), str(size)]
        self._processes = processes
        self.child = processes.start("floor-reader", argv, dict(os.environ), stdout=self.out)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._has_open(self.line.path):
            processes.check_alive(self.child)
            if time.monotonic() > deadline:
                raise BenchError("the floor reader never opened its pty")
            time.sleep(0.01)

    def _has_open(self, path: str) -> bool:
        fd_dir = Path(f"/proc/{self.child.pid}/fd")
        with contextlib.suppress(OSError):
            return any(str(fd.readlink()) == path for fd in fd_dir.iterdir())
        return False

    def stamps(self, timeout_s: float) -> list[float]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.process.wait(timeout_s)
        self._processes.stop(self.child)
        self.line.close()
        text = self.out.read_text(encoding="utf-8")
        return [float(v) for v in text.split()]


def stage(name: str, start: dict[int, float], end: dict[int, float], note: str) -> list[str]:
    """A latency table row: end - start per frame, for the frames in both."""
    values = [end[s] - start[s] for s in start if s in end]
    if not values:
        return [name, "-", "-", "-", "-", "-", note]
    return [
        name,
        str(len(values)),
        ms(pct(values, 50)),
        ms(pct(values, 90)),
        ms(pct(values, 99)),
        ms(max(values)),
        note,
    ]


def paced(frames: Sequence[tuple[int, bytes]], write: Callable[[bytes], None]) -> list[float]:
    """Write each frame whole when its last byte would leave the UART; the times written."""
    byte_s = BITS_PER_BYTE / BAUD
    stamps = []
    due = time.monotonic()
    for _seq, frame in frames:
        due += len(frame) * byte_s
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        write(frame)
        stamps.append(time.time())
    return stamps


def floor_rows(gateway: Gateway, frames: Sequence[tuple[int, bytes]]) -> list[list[str]]:
    """What this machine gives any Python process at the same pacing, measured in a pass of its
    own after the gateway's (measuring them alongside would take the gateway's CPU at the very
    moments it is measured): a bare reader on a second pty, a Redis round trip."""
    processes = gateway._processes  # noqa: SLF001
    sizes = {len(frame) for _, frame in frames}
    floor = FloorReader(processes, len(frames), sizes.pop()) if len(sizes) == 1 else None
    byte_s = BITS_PER_BYTE / BAUD
    pings = PingFloor(processes, gateway.infra.redis_url, len(frames), len(frames[0][1]) * byte_s)
    floor_written = paced(frames, floor.line.write if floor is not None else lambda _f: None)
    rows = []
    if floor is not None:
        floor_read = dict(enumerate(floor.stamps(5.0)))
        rows.append(
            stage(
                "floor: bare Python reader, 2nd pty, same pacing (own pass)",
                dict(enumerate(floor_written)),
                floor_read,
                "os.read",
            )
        )
    round_trips = pings.round_trips(5.0)
    if round_trips:
        rows.append(
            stage(
                "floor: Redis PING round trip from Python, same pacing (own pass)",
                dict.fromkeys(range(len(round_trips)), 0.0),
                dict(enumerate(round_trips)),
                "redis-py",
            )
        )
    return rows


HANDOFF_METRIC = "gateway_ingest_handoff_seconds"


def handoff_buckets(port: int) -> dict[float, float]:
    """ingest's hand-off histogram (receive stamp -> Redis accepted): upper bound -> count."""
    url = f"http://{LOOPBACK}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # our own loopback
            text = reply.read().decode()
    except OSError as exc:
        raise BenchError(f"ingest's metrics at {url}: {exc}") from exc
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{HANDOFF_METRIC}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


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
    sub_factory = ctx.sub_factory
    n = options.latency_frames
    frames = serial_frames(first_seq, n, first_counter=(options.frames + 1) % 256)
    sub = sub_factory("sub-latency")
    keys = StreamKeys(PREFIX)
    frames_before = _s(client.xinfo_stream(keys.frames)["last-generated-id"])
    records_before = _s(client.xinfo_stream(keys.records)["last-generated-id"])
    meter = CpuMeter([*gateway.running(), gateway.infra.redis, gateway.infra.mosquitto, sub.child])
    handoff_before = handoff_buckets(gateway.ingest_metrics_port)
    meter.start()
    t0 = time.time()
    written = dict(zip((seq for seq, _ in frames), paced(frames, gateway.line.write), strict=True))
    t_written = time.time()
    sub.wait_for(n, gateway.running())
    meter.stop()
    sub.stop()
    handoff_table = handoff_rows(handoff_before, handoff_buckets(gateway.ingest_metrics_port))
    deliveries = {d.seq: d.at for d in sub.deliveries() if d.seq in written}
    received: dict[int, float] = {}
    accepted: dict[int, float] = {}
    frame_seq: dict[str, int] = {}
    for entry_id, data in stream_entries(client, keys.frames, "(" + frames_before):
        seq, rx = seq_of_frame(data)
        received[seq], accepted[seq] = rx, id_seconds(entry_id)
        frame_seq[_s(entry_id)] = seq
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


# ------------------------------------------------------------------------------- 4. memory


def report_memory(title: str, children: Sequence[Child], results: Results) -> None:
    rows = []
    for child in children:
        if child.process.poll() is not None:
            rows.append((child.name, str(child.pid), "exited", "-", "-"))
            continue
        mem = memory_kb(child.pid)
        rss, hwm = mem.get("VmRSS", 0) / 1024, mem.get("VmHWM", 0) / 1024
        target = "-"
        if child.name in SERVICES:
            results.rss_mb[child.name] = max(results.rss_mb.get(child.name, 0.0), hwm)
            target = f"≤ {TARGET_RSS_MB:g}: {verdict(hwm <= TARGET_RSS_MB)}"
        rows.append((child.name, str(child.pid), f"{rss:.1f}", f"{hwm:.1f}", target))
    table(title, ("process", "pid", "VmRSS MB", "VmHWM (peak) MB", "target"), rows)


# ------------------------------------------------------------------------------- 5. backlog


def bench_backlog(ctx: Context, first_seq: int) -> None:
    options, results, gateway, client = ctx.options, ctx.results, ctx.gateway, ctx.client
    sub_factory = ctx.sub_factory
    n = options.backlog_frames
    keys = StreamKeys(PREFIX)
    gateway.stop("gateway-decoder")
    gateway.stop("gateway-publisher")
    records_before = _s(client.xinfo_stream(keys.records)["last-generated-id"])
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
    sub = sub_factory("sub-backlog")
    t0 = time.time()
    decoder = gateway.start("gateway-decoder")
    publisher = gateway.start("gateway-publisher")
    meter = CpuMeter([decoder, publisher, gateway.infra.redis, gateway.infra.mosquitto, sub.child])
    calls_before = command_calls(client)
    meter.start()
    profiler = Profiler(gateway._processes, options.py_spy, "backlog")  # noqa: SLF001
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


# ------------------------------------------------------------------------------- main


@dataclass(frozen=True, slots=True)
class Context:
    """What every measurement on the running gateway works with."""

    options: Options
    results: Results
    gateway: Gateway
    client: redis.Redis
    sub_factory: Callable[[str], Subscriber]
    receive_maximum: int | None


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


def run(options: Options) -> int:
    redis_bin = find_binary("redis-server")
    mosquitto_bin = find_binary("mosquitto")
    sub_bin = find_binary("mosquitto_sub")
    pub_bin = find_binary("mosquitto_pub")
    print("# gateway benchmark" + (" (--quick)" if options.quick else ""))
    table("machine", ("what", "value"), describe_machine(redis_bin, mosquitto_bin))
    results = Results()
    bench_decoder(options, results)
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    processes = Processes(work_dir)
    line = ModemLine()
    failed = True
    try:
        infra = start_infrastructure(processes, redis_bin, mosquitto_bin, options)
        client = redis.Redis.from_url(infra.redis_url)
        gateway = Gateway(processes, infra, line)
        for name in SERVICES:
            gateway.start(name)
        gateway.wait_log("gateway-ingest", "serial_opened")
        gateway.wait_log("gateway-publisher", "mqtt_connected")
        gateway.wait_log("gateway-decoder", "decoder_started")
        receive_max = log_value(
            gateway.children["gateway-publisher"], "mqtt_connected", "receive_maximum"
        )
        table(
            "setup",
            ("what", "value"),
            [
                (
                    "Redis",
                    (
                        f"private, {'AOF everysec' if options.redis_aof else 'no persistence'}"
                        f", {infra.redis_url}"
                    ),
                ),
                (
                    "MQTT",
                    (
                        f"private mosquitto on {LOOPBACK}:{infra.mqtt_port}, no TLS; "
                        f"broker Receive Maximum {receive_max}, publisher window 64"
                    ),
                ),
                ("serial line", f"pty {line.path} (raw)"),
                ("bytecode", bytecode_state()),
                ("subscriber", "mosquitto_sub, QoS 1, stamps each message on arrival (%U)"),
                (
                    "services",
                    "gateway-ingest, 1 x gateway-decoder, gateway-publisher; log level info",
                ),
            ],
        )

        def sub_factory(name: str) -> Subscriber:
            sub = Subscriber(processes, sub_bin, infra.mqtt_port, name)
            sub.wait_subscribed(pub_bin)
            return sub

        ctx = Context(options, results, gateway, client, sub_factory, receive_max)
        bench_end_to_end(ctx, first_seq=0)
        bench_latency(ctx, first_seq=10_000_000)
        report_memory(
            "4. resident memory after the burst and the paced run",
            [*gateway.running(), infra.redis, infra.mosquitto],
            results,
        )
        bench_backlog(ctx, first_seq=20_000_000)
        report_memory(
            "4b. resident memory after the backlog drain (decoder, publisher restarted for it)",
            [*gateway.running(), infra.redis],
            results,
        )
        summary(options, results)
        client.close()
        failed = False
    finally:
        processes.stop_all()
        line.close()
        if options.keep_logs or failed:
            print(f"\nlogs: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        return run(options)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
