"""A redis-server or a Mosquitto of one's own, on a free loopback port, which a test, the bench
or the demo may start, stop, kill and restart on the same port.

Each keeps its configuration, data and log in the directory it is given (a test's temporary
directory, the bench's work directory), so stopping or killing it never touches the shared
servers the other tests use.
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import signal
import socket
import subprocess
from typing import TYPE_CHECKING, Literal

import redis

from gateway_devkit.polling import wait_until
from gateway_devkit.processes import START_TIMEOUT_S, log_tail, stop_process

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "LOOPBACK",
    "PrivateBroker",
    "PrivateRedis",
    "ServerError",
    "find_binary",
    "free_port",
    "port_answers",
]

LOOPBACK = "127.0.0.1"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServerError(RuntimeError):
    """A private server is not installed, exited, or did not answer in time."""


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on loopback."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@functools.cache
def find_binary(name: str) -> str | None:
    """`name` on the PATH or in an sbin directory (Debian installs mosquitto in /usr/sbin);
    looked up once per process."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


class _PrivateServer:
    """A server process on `port`, started from `command()`, logging to `log` (and anything it
    prints to `output`)."""

    def __init__(self, name: str, directory: Path, log_name: str) -> None:
        binary = find_binary(name)
        if binary is None:
            raise ServerError(f"`{name}` is not installed (e.g. `apt-get install {name}`)")
        self.name = name
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = free_port()
        self.log = directory / log_name
        self.output = directory / f"{name}.out"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start it and wait until it listens on its port."""
        with self.output.open("ab") as output:  # what it says before its log is open
            self.process = process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C reaches its parent only
            )
        listening = wait_until(
            lambda: not self.alive() or port_answers(self.host, self.port), START_TIMEOUT_S
        )
        if process.poll() is not None:
            self.process = None
            raise ServerError(f"{self.name} exited with {process.returncode}: {self._logs()}")
        if not listening:
            self.stop(signal.SIGKILL)
            raise ServerError(
                f"{self.name} did not listen on {self.port} within {START_TIMEOUT_S} s: "
                f"{self._logs()}"
            )

    def _logs(self) -> str:
        return f"{log_tail(self.output)}\n{log_tail(self.log)}"

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop it with `sig` (SIGKILL after 10 s); its exit code, None if it was not running."""
        if self.process is None:
            return None
        code = stop_process(self.process, sig)
        self.process = None
        return code


class PrivateRedis(_PrivateServer):
    """A redis-server of one's own. `appendfsync` "always" makes every acknowledged write
    survive kill -9, "everysec" is the deployment's AOF, None is no persistence at all (a
    restarted server starts empty). Its AOF goes to `data_dir` (`--dir`; default: `directory`,
    which keeps its log whatever happens to `data_dir`: a small filesystem that fills up, say).
    `extra_args` are more configuration options for its command line (e.g.
    `("--aof-load-truncated", "yes")`)."""

    def __init__(
        self,
        directory: Path,
        *,
        appendfsync: Literal["always", "everysec"] | None = "everysec",
        extra_args: Sequence[str] = (),
        data_dir: Path | None = None,
    ) -> None:
        super().__init__("redis-server", directory, "redis.log")
        self.appendfsync = appendfsync
        self.extra_args = tuple(extra_args)
        self.data_dir = directory if data_dir is None else data_dir

    @property
    def aof_dir(self) -> Path:
        """Redis 7's multi-part AOF: a manifest, a base file and incr files (default name)."""
        return self.data_dir / "appendonlydir"

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
            "--dir", str(self.data_dir),
            *persistence,
            "--save", "",
            "--logfile", str(self.log),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        """Start it and wait until it answers PING (listening is not enough: it refuses
        commands while it loads its AOF)."""
        super().start()
        client = self.client()

        def answers() -> bool:
            if not self.alive():
                return True  # it exited: no use waiting for it
            try:
                client.ping()
            except (redis.BusyLoadingError, redis.ConnectionError):
                return False
            return True

        try:
            if not wait_until(answers, START_TIMEOUT_S):
                raise ServerError(f"redis-server did not answer PING: {self._logs()}")
        finally:
            client.close()
        if not self.alive():
            raise ServerError(f"redis-server exited while starting: {self._logs()}")

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=10)


class PrivateBroker(_PrivateServer):
    """A Mosquitto of one's own. With `persistence` it saves its sessions and their queued
    QoS 1 messages when it stops on SIGTERM, so a persistent session survives a restart;
    `extra_config` is appended to its configuration (after the listener)."""

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
