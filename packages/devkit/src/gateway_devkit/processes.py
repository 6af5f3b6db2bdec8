"""Child processes of a test, the bench or the demo, under one supervisor.

Each child logs to a file of its own in the supervisor's directory, runs in a process group of
its own (Ctrl-C reaches the parent only, which stops the children in reverse order of starting)
and is kept after it exits: a test may kill a service and start it again, and every incarnation
stays readable. A child that exits while nobody stopped it is a crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gateway_devkit.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "BIN",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "Child",
    "Supervisor",
    "SupervisorError",
    "clean_env",
    "log_tail",
    "stop_process",
]

#: The virtualenv's bin directory: the services' console scripts.
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class SupervisorError(RuntimeError):
    """A child exited, or did not get where it should in time; the message has its log's end."""


def log_tail(path: Path, chars: int = 3000) -> str:
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
    code. Its stdout pipe, if any, is closed."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without its GATEWAY_* variables, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(values)
    return env


@dataclass
class Child:
    """One incarnation of a child process."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    """time.time() when it was started (log lines carry wall-clock timestamps)."""
    stopped: bool = False
    """The supervisor signalled it while it ran; any other exit is a crash."""
    reported: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def crashed(self) -> bool:
        return not self.stopped and self.process.poll() is not None

    def log(self) -> str:
        return log_tail(self.log_path, 10**12)

    def tail(self, chars: int = 3000) -> str:
        return log_tail(self.log_path, chars)


class Supervisor:
    """Starts children with `env` (default: this environment without GATEWAY_* variables) and
    the log directory `log_dir`; stops them in reverse order."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env: dict[str, str] = dict(env) if env is not None else clean_env()
        self.children: list[Child] = []
        """Every incarnation, in the order they were started."""

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        stdout: Path | None = None,
        pipe_stdout: bool = False,
    ) -> Child:
        """Start `argv` as `name` with the supervisor's environment plus `env`; stderr (and
        stdout, unless it goes to the file `stdout` or to a pipe) to `{name}.log`, then
        `{name}.2.log`... for the next incarnations."""
        count = len(self.incarnations(name)) + 1
        log_path = self.log_dir / (f"{name}.log" if count == 1 else f"{name}.{count}.log")
        with contextlib.ExitStack() as files:
            log = files.enter_context(log_path.open("ab"))
            out: IO[bytes] | int = log
            if pipe_stdout:
                out = subprocess.PIPE
            elif stdout is not None:
                out = files.enter_context(stdout.open("ab"))
            process = subprocess.Popen(
                argv,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                process_group=0,  # Ctrl-C reaches the parent only; it stops the children
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def start_service(self, name: str, command: str | None = None, **env: str) -> Child:
        """The console script `command` (default: `name`) of this virtualenv, with a health
        file of its own unless `env` names one."""
        executable = BIN / (command or name)
        if not executable.exists():
            raise SupervisorError(f"{executable} is missing: run `make install`")
        health = {"GATEWAY_HEALTH_FILE": str(self.log_dir / f"{name}-health.json")}
        return self.start(name, [str(executable)], {**health, **env})

    def incarnations(self, name: str) -> list[Child]:
        return [c for c in self.children if c.name == name]

    def current(self, name: str) -> Child:
        """The latest incarnation of `name`."""
        found = self.incarnations(name)
        if not found:
            raise KeyError(name)
        return found[-1]

    @property
    def latest(self) -> dict[str, Child]:
        """The latest incarnation of each name, in the order the names were first started."""
        return {c.name: self.current(c.name) for c in self.children}

    def stop(
        self, which: str | Child, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S
    ) -> int:
        """Stop the child (or the latest incarnation of the name) with `sig`, SIGKILL after
        `timeout_s`; its exit code. One that had exited already stays a crash."""
        child = self.current(which) if isinstance(which, str) else which
        if child.alive():
            child.stopped = True
        return stop_process(child.process, sig, timeout_s)

    def kill(self, which: str | Child) -> int:
        return self.stop(which, signal.SIGKILL)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for child in reversed(self.children):
            self.stop(child, sig)

    def check_alive(self, *children: Child) -> None:
        """Raise SupervisorError if one of `children` (default: the latest incarnation of each
        name that was not stopped) has exited."""
        watched = children or tuple(c for c in self.latest.values() if not c.stopped)
        for child in watched:
            if not child.alive():
                raise SupervisorError(
                    f"{child.name} exited ({child.process.returncode}):\n{child.tail(2000)}"
                )

    def wait_log(self, which: str | Child, marker: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until `marker` is in the child's log; SupervisorError if it exits first or the
        marker does not come in time."""
        child = self.current(which) if isinstance(which, str) else which
        if not wait_until(lambda: marker in child.log() or not child.alive(), timeout_s):
            raise SupervisorError(f"{child.name}: no {marker} within {timeout_s} s\n{self.logs()}")
        if marker not in child.log():
            raise SupervisorError(f"{child.name} exited before {marker}\n{self.logs()}")

    def newly_exited(self) -> list[Child]:
        """Children that exited by themselves since the last call."""
        gone = [c for c in self.children if not c.reported and c.crashed()]
        for child in gone:
            child.reported = True
        return gone

    def crashes(self) -> list[str]:
        return [
            f"{c.log_path.name} exited with {c.process.returncode}"
            for c in self.children
            if c.crashed()
        ]

    def logs(self, chars: int = 4000) -> str:
        """The end of every incarnation's log, for a failure message."""
        return "\n".join(f"--- {c.log_path.name}\n{c.tail(chars)}" for c in self.children)
