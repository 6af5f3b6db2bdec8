"""A redis-server or a Mosquitto of one test's own, which the test may start, stop, kill and
restart on the same port, and the few helpers they need.

Each runs on a free loopback port with its configuration, data and log in the directory it is
given (the test's temporary directory), so stopping or killing it never touches the shared
servers the other tests use. Every suite imports this module as `private_servers` (the tests
directory is on pytest's pythonpath).
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

import redis

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on loopback."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    """`name` on the PATH or in an sbin directory (Debian installs mosquitto in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file ("(no log)" if there is none yet)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def stop_process(
    process: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    timeout_s: float = STOP_TIMEOUT_S,
) -> int:
    """Send `sig` if it still runs, SIGKILL if it has not exited after `timeout_s`; its exit
    code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    return process.returncode


class _PrivateServer:
    """A server process on `port`, started from `command()`, logging to `log` (and anything it
    prints to `output`)."""

    what = "server"

    def __init__(self, binary_name: str, directory: Path, log_name: str) -> None:
        binary = find_binary(binary_name)
        if binary is None:
            raise FileNotFoundError(f"{binary_name} is not installed")
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = free_port()
        self.log = directory / log_name
        self.output = directory / f"{binary_name}.out"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start it and wait until it listens on its port."""
        with self.output.open("ab") as output:  # what it says before its log is open
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise RuntimeError(f"{self.what} exited with {code}: {self._logs()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(
                    f"{self.what} did not listen on {self.port} within {START_TIMEOUT_S} s: "
                    f"{self._logs()}"
                )
            time.sleep(0.05)

    def _logs(self) -> str:
        return f"{tail(self.output)}\n{tail(self.log)}"

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop it with `sig` (SIGKILL after 10 s); its exit code, None if it was not running."""
        if self.process is None:
            return None
        code = stop_process(self.process, sig)
        self.process = None
        return code


class PrivateRedis(_PrivateServer):
    """A redis-server of the test's own. `appendfsync` "always" makes every acknowledged write
    survive kill -9, "everysec" is the deployment's AOF, None is no persistence at all (a
    restarted server starts empty)."""

    what = "redis-server"

    def __init__(
        self,
        directory: Path,
        *,
        appendfsync: Literal["always", "everysec"] | None = "everysec",
    ) -> None:
        super().__init__("redis-server", directory, "redis.log")
        self.appendfsync = appendfsync

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        if self.appendfsync is None:
            persistence = ["--appendonly", "no"]
        else:
            persistence = ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            *persistence,
            "--save", "",
            "--logfile", str(self.log),
        ]  # fmt: skip

    def start(self) -> None:
        """Start it and wait until it answers PING (listening is not enough: it refuses
        commands while it loads its AOF)."""
        super().start()
        client = self.client()
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    client.ping()
                except (redis.BusyLoadingError, redis.ConnectionError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
                else:
                    return
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=10)


class PrivateBroker(_PrivateServer):
    """A Mosquitto of the test's own. With `persistence` it saves its sessions and their queued
    QoS 1 messages when it stops on SIGTERM, so a persistent session survives a restart;
    `extra_config` is appended to its configuration (after the listener)."""

    what = "mosquitto"

    def __init__(
        self, directory: Path, *, persistence: bool = True, extra_config: str = ""
    ) -> None:
        super().__init__("mosquitto", directory, "mosquitto.log")
        self.persistence = persistence
        self.config = directory / "mosquitto.conf"
        saved = (
            f"persistence true\npersistence_location {directory}/\nautosave_interval 0\n"
            if persistence
            else "persistence false\n"
        )
        self.config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            f"user {getpass.getuser()}\n"  # as root, do not switch to the `mosquitto` user
            f"{saved}"
            f"log_dest file {self.log}\n"
            f"{extra_config}\n",
            encoding="utf-8",
        )

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]
