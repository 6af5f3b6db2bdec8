"""Sampling a running gateway every few seconds, from outside: Redis's counts and memory, and the
resident memory and CPU time of each process from /proc."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from gateway_devkit.bench.cpu import cpu_seconds, machine_cpu
from gateway_devkit.bench.memory import memory_kb

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "Sample",
    "Sampler",
    "StreamCount",
    "group_backlog",
    "process_rss_cpu",
    "stream_count",
]


@dataclass(frozen=True, slots=True)
class StreamCount:
    added: int
    """Entries ever added to the stream (Redis's `entries-added`): trimming does not lower it."""
    length: int
    """Entries in the stream now."""


def stream_count(client: redis.Redis, key: str) -> StreamCount:
    """The stream's counts; zero while it does not exist."""
    try:
        info: Any = client.xinfo_stream(key)
    except redis.ResponseError:
        return StreamCount(0, 0)
    return StreamCount(int(info["entries-added"]), int(info["length"]))


def group_backlog(client: redis.Redis, stream: str, group: str) -> int:
    """Entries of `stream` the group has not acknowledged: pending, and not yet delivered (its
    lag; counted from `entries-read` when Redis cannot tell it); 0 without the group."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:
        return 0
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            lag = info.get("lag")
            if lag is None:
                lag = stream_count(client, stream).added - int(info.get("entries-read") or 0)
            return int(info["pending"]) + int(lag)
    return 0


def process_rss_cpu(pid: int) -> tuple[int, float] | None:
    """(VmRSS in kB, user + system CPU seconds) of a process; None once it has exited."""
    try:
        return memory_kb(pid).get("VmRSS", 0), cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float
    """Seconds since the sampler started."""
    frames: int
    """Frames accepted: entries ever added to `{p}:frames`."""
    records: int
    """Entries ever added to `{p}:records`."""
    dead: int
    """Entries ever added to `{p}:dead`."""
    ddata: int
    """DDATA received by the subscriber."""
    frames_len: int
    records_len: int
    backlog: int
    """Entries the groups `decoder` and `publisher` have not acknowledged (pending + lag)."""
    redis_used_memory: int
    """Redis's INFO `used_memory`, bytes."""
    redis_aof_bytes: int
    """The size of Redis's append-only file (INFO `aof_current_size`; 0 without AOF)."""
    rss_kb: Mapping[str, int]
    """VmRSS of each process still running."""
    cpu_s: Mapping[str, float]
    """CPU seconds (user + system) each process has used since it started."""
    machine_busy_s: float
    """CPU seconds the whole machine has been busy since boot, all cores (what else ran)."""


class Sampler:
    """Takes a `Sample` every `interval_s` in a thread of its own, and once more at `stop()`.

    `streams` are the frames, records and dead letters, `groups` those of the decoders and of
    the publisher; `processes` maps a name to a pid; `ddata` counts what the subscriber
    received.
    """

    def __init__(
        self,
        client: redis.Redis,
        streams: tuple[str, str, str],
        groups: tuple[str, str],
        processes: Mapping[str, int],
        ddata: Callable[[], int],
        *,
        interval_s: float,
    ) -> None:
        self._client = client
        self._frames, self._records, self._dead = streams
        self._groups = groups
        self._processes = dict(processes)
        self._ddata = ddata
        self._interval_s = interval_s
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._taking = threading.Lock()
        self._stop = threading.Event()
        self._t0 = 0.0
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        """Sample one more process from now on."""
        with self._lock:
            self._processes[name] = pid

    def start(self) -> None:
        """Take the first sample now, then one every `interval_s` in the thread."""
        self._t0 = time.monotonic()
        self.take()
        self._thread.start()

    def stop(self) -> list[Sample]:
        """Stop sampling after one last sample; every sample. Raises what the thread met."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise RuntimeError(f"the soak sampler failed: {self.error!r}") from self.error
        self.take()
        return self.snapshot()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def take(self) -> Sample:
        """Sample now (from any thread: one sample at a time, in order)."""
        with self._taking:
            return self._take()

    def _take(self) -> Sample:
        frames = stream_count(self._client, self._frames)
        records = stream_count(self._client, self._records)
        dead = stream_count(self._client, self._dead)
        backlog = group_backlog(self._client, self._frames, self._groups[0])
        backlog += group_backlog(self._client, self._records, self._groups[1])
        memory: Any = self._client.info("memory")
        persistence: Any = self._client.info("persistence")
        rss: dict[str, int] = {}
        cpu: dict[str, float] = {}
        with self._lock:
            processes = list(self._processes.items())
        for name, pid in processes:
            measured = process_rss_cpu(pid)
            if measured is not None:
                rss[name], cpu[name] = measured
        sample = Sample(
            t_s=round(time.monotonic() - self._t0, 3),
            frames=frames.added,
            records=records.added,
            dead=dead.added,
            ddata=self._ddata(),
            frames_len=frames.length,
            records_len=records.length,
            backlog=backlog,
            redis_used_memory=int(memory["used_memory"]),
            redis_aof_bytes=int(persistence.get("aof_current_size", 0)),
            rss_kb=rss,
            cpu_s=cpu,
            machine_busy_s=machine_cpu()[0],
        )
        with self._lock:
            self.samples.append(sample)
        return sample

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval_s):
                self.take()
        except BaseException as exc:  # reported by stop() in the caller's thread
            self.error = exc
