"""The parts of the fault-injection tests: services a test may kill, a modem line paced at the
serial rate, and an MQTT subscriber that outlives broker restarts (the private Redis and
Mosquitto they run on are in private_servers.py).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from private_servers import START_TIMEOUT_S, STOP_TIMEOUT_S, stop_process, tail

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

BIN = Path(sys.executable).parent
#: 115200 baud, 8N1: ten bits on the wire per byte.
LINE_BYTES_PER_S = 115200 / 10


# --------------------------------------------------------------------------- the services


@dataclass
class Incarnation:
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    """time.monotonic() when it was started."""
    started_wall: float
    """time.time() when it was started (log lines carry wall-clock timestamps)."""
    killed: bool = False
    """True once the test killed it; any other exit before the end is a crash."""


class ServiceSlot:
    """One service (a console script of the virtualenv) that the test kills and restarts."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self._command = command
        self._env = env
        self._log_dir = log_dir
        self.incarnations: list[Incarnation] = []
        self.crashes: list[str] = []

    @property
    def current(self) -> Incarnation:
        return self.incarnations[-1]

    def alive(self) -> bool:
        return bool(self.incarnations) and self.current.process.poll() is None

    def start(self) -> None:
        log_path = self._log_dir / f"{self.name}.{len(self.incarnations) + 1}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(BIN / self._command)],
                env={**os.environ, **self._env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.incarnations.append(Incarnation(process, log_path, time.monotonic(), time.time()))

    def kill(self) -> None:
        """SIGKILL the running incarnation (noting a crash if it had already exited)."""
        self.check()
        incarnation = self.current
        incarnation.killed = True
        if incarnation.process.poll() is None:
            incarnation.process.kill()
        incarnation.process.wait(STOP_TIMEOUT_S)

    def check(self) -> None:
        """Note the running incarnation as crashed if it exited while nobody killed it."""
        incarnation = self.current
        code = incarnation.process.poll()
        if code is not None and not incarnation.killed:
            incarnation.killed = True  # noted once
            self.crashes.append(f"{incarnation.log_path.name} exited with {code}")

    def stop(self) -> int | None:
        """SIGTERM the running incarnation; its exit code (None if it was not running)."""
        if not self.incarnations or not self.alive():
            return None
        return stop_process(self.current.process, signal.SIGTERM)

    def logs(self, chars: int = 2500) -> str:
        return "\n".join(
            f"--- {i.log_path.name}\n{tail(i.log_path, chars)}" for i in self.incarnations
        )

    def log_text(self) -> str:
        return "".join(tail(i.log_path, 10**9) for i in self.incarnations)

    def event_delays(self, event: str) -> list[float | None]:
        """Per incarnation, seconds from its start to its first log line of `event` (JSON logs)."""
        delays: list[float | None] = []
        for incarnation in self.incarnations:
            delay = None
            for line in tail(incarnation.log_path, 10**9).splitlines():
                if f'"event": "{event}"' in line:
                    with contextlib.suppress(ValueError, KeyError):
                        stamp = datetime.fromisoformat(json.loads(line)["timestamp"])
                        delay = round(stamp.timestamp() - incarnation.started_wall, 2)
                    break
            delays.append(delay)
        return delays

    def wait_log(self, marker: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while marker not in tail(self.current.log_path, 10**9):
            if self.current.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited before {marker!r}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name}: no {marker!r} within {timeout_s} s\n{self.logs()}"
                )
            time.sleep(0.05)


# --------------------------------------------------------------------------- the serial line


class PacedLine:
    """The modem's side of a pty, writing at the serial line rate.

    Like a UART, the line does not wait for a reader: when the pty's receive buffer is full (no
    ingest has read it for a while), the bytes that do not fit are lost, and a frame of which any
    byte was lost counts as lost on the line.
    """

    def __init__(self, bytes_per_s: float = LINE_BYTES_PER_S) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self.slave)
        self._bytes_per_s = bytes_per_s

    def send(
        self, frames: Sequence[bytes], clock: Callable[[], float] = time.monotonic
    ) -> list[float | None]:
        """Write the frames at line rate; per frame, when its last byte went out (None: lost)."""
        sent_at: list[float | None] = []
        started = clock()
        line_bytes = 0
        for frame in frames:
            delay = started + line_bytes / self._bytes_per_s - clock()
            if delay > 0:
                time.sleep(delay)
            line_bytes += len(frame)
            try:
                written = os.write(self.master, frame)
            except BlockingIOError:
                written = 0
            sent_at.append(clock() if written == len(frame) else None)
        return sent_at

    def unread(self) -> int:
        """Bytes the line delivered that no ingest has read yet (the pty's input queue)."""
        buf = array.array("i", [0])
        fcntl.ioctl(self.slave, termios.FIONREAD, buf)
        return buf[0]

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


# --------------------------------------------------------------------------- the subscriber


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    dup: bool
    """The broker redelivered it to this subscriber (MQTT DUP flag)."""
    retain: bool
    at: float
    """time.monotonic() at arrival."""


@dataclass
class DurableSubscriber:
    """An MQTT v5 subscriber with a persistent session (clean start off, session expiry one
    hour): across a broker restart it reconnects and receives what was queued for it."""

    host: str
    port: int
    topic_filter: str
    client_id: str
    messages: list[Received] = field(default_factory=list)
    connections: list[bool] = field(default_factory=list)
    """session_present of each CONNACK."""
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_args: self._subscribed.set()
        client.on_message = self._on_message
        self._client = client

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        self._client.connect(self.host, self.port, clean_start=False, properties=properties)
        self._client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            raise RuntimeError("the subscriber could not subscribe")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, reason: object, _p: object
    ) -> None:
        with self._cond:
            self.connections.append(flags.session_present)
        if not flags.session_present:
            client.subscribe(self.topic_filter, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received = Received(
            msg.topic, bytes(msg.payload), bool(msg.dup), bool(msg.retain), time.monotonic()
        )
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)


DEFAULT_SEED = 20261127


def choose_seed(variable: str) -> int:
    """A test's random seed: fixed by default so CI is repeatable; `{variable}=N` replays one,
    `{variable}=random` explores a new one (the test prints it, to replay it)."""
    value = os.environ.get(variable, "").strip()
    if value == "random":
        return random.SystemRandom().randrange(10**6)
    return int(value) if value else DEFAULT_SEED
