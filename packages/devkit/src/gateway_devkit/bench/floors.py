"""What this machine gives any Python process at the latency run's pacing, measured in a pass of
its own after the gateway's (measuring them alongside would take the gateway's CPU at the very
moments it is measured): a bare reader on a second pty, a Redis round trip."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gateway_devkit.bench.harness import BenchError
from gateway_devkit.bench.report import ms, pct
from gateway_devkit.modem_line import LINE_BYTES_PER_S, ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import START_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_devkit.bench.harness import Gateway
    from gateway_devkit.processes import Supervisor


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", f"gateway_devkit.bench.{name}"]


class PingFloor:
    """ping_floor.py, started at once: its pings run while the reader's frames are written."""

    def __init__(
        self, supervisor: Supervisor, redis_url: str, count: int, interval_s: float
    ) -> None:
        self.out = supervisor.log_dir / "ping-floor.out"
        argv = [*_module("ping_floor"), redis_url, str(count), repr(interval_s)]
        self._supervisor = supervisor
        self.child = supervisor.start("ping-floor", argv, stdout=self.out)

    def round_trips(self, timeout_s: float) -> list[float]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.process.wait(timeout_s)
        self._supervisor.stop(self.child)
        return [float(v) for v in self.out.read_text(encoding="utf-8").split()]


class FloorReader:
    """pty_reader_floor.py on a pty of its own, once it has the pty open."""

    def __init__(self, supervisor: Supervisor, frames: int, size: int) -> None:
        self.line = ModemLine()
        self.out = supervisor.log_dir / "floor.out"
        argv = [*_module("pty_reader_floor"), self.line.path, str(frames), str(size)]
        self._supervisor = supervisor
        self.child = supervisor.start("floor-reader", argv, stdout=self.out)

        def opened() -> bool:
            supervisor.check_alive(self.child)
            return self._has_open(self.line.path)

        if not wait_until(opened, START_TIMEOUT_S, interval_s=0.01):
            raise BenchError("the floor reader never opened its pty")

    def _has_open(self, path: str) -> bool:
        fd_dir = Path(f"/proc/{self.child.pid}/fd")
        with contextlib.suppress(OSError):
            return any(str(fd.readlink()) == path for fd in fd_dir.iterdir())
        return False

    def stamps(self, timeout_s: float) -> list[float]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.process.wait(timeout_s)
        self._supervisor.stop(self.child)
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


def floor_rows(gateway: Gateway, frames: Sequence[tuple[int, bytes]]) -> list[list[str]]:
    """The floors' rows of the latency table."""
    supervisor = gateway.supervisor
    sizes = {len(frame) for _, frame in frames}
    floor = FloorReader(supervisor, len(frames), sizes.pop()) if len(sizes) == 1 else None
    interval_s = len(frames[0][1]) / LINE_BYTES_PER_S
    pings = PingFloor(supervisor, gateway.redis.url, len(frames), interval_s)
    rows = []
    if floor is not None:
        written = floor.line.paced([frame for _, frame in frames])
        floor_read = dict(enumerate(floor.stamps(5.0)))
        rows.append(
            stage(
                "floor: bare Python reader, 2nd pty, same pacing (own pass)",
                {i: at for i, at in enumerate(written) if at is not None},
                floor_read,
                "os.read",
            )
        )
    else:  # the pings still run at the frames' pace
        time.sleep(sum(len(frame) for _, frame in frames) / LINE_BYTES_PER_S)
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
