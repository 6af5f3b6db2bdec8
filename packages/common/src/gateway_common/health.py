"""Is this service process making progress? Heartbeat, problems, the health file, the watchdog.

A service's loop calls `beat()` every turn (a turn is bounded: blocking reads time out within
seconds) and names what is wrong with `problem(component, reason)` / `clear(component)`. The
state is written, at most once a second, to a small JSON file that `gateway-healthcheck` reads
(a container healthcheck), and served on `/healthz` when the metrics port is set.

Docker never restarts an unhealthy container, so the `Watchdog` makes the process leave by itself:
at once when the loop has not beaten for `watchdog_s` (it is wedged: exit without cleanup), and
through a graceful stop when a problem has lasted `unhealthy_exit_s` (so the restart policy gives
it a fresh start, re-resolving a replugged serial device, for example).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from gateway_common.lifecycle import StopSignal

__all__ = ["EXIT_UNHEALTHY", "EXIT_WEDGED", "Health", "HealthState", "Watchdog", "read_health_file"]

log = get_logger(__name__)

EXIT_WEDGED: Final = 70
"""Exit code when the loop stopped beating (EX_SOFTWARE)."""
EXIT_UNHEALTHY: Final = 75
"""Exit code after a graceful stop because a problem lasted too long (EX_TEMPFAIL)."""
UNHEALTHY_STOP_REASON: Final = "unhealthy"
WRITE_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class HealthState:
    service: str
    ok: bool
    reason: str
    """Empty when ok; otherwise the problems, "component: reason" joined by "; "."""
    beat_age_s: float
    unhealthy_for_s: float
    """How long the oldest current problem that a restart could fix has lasted (0: none)."""

    def fresh(self, max_age_s: float) -> bool:
        return self.beat_age_s <= max_age_s


@dataclass(frozen=True, slots=True)
class _Problem:
    reason: str
    since: float
    restart_helps: bool


class Health:
    """The health of one service process; thread-safe (problems come from several threads)."""

    def __init__(
        self,
        service: str,
        *,
        file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self._file = file
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._last_beat = clock()
        self._problems: dict[str, _Problem] = {}
        self._last_write = float("-inf")
        self._write_failed = False

    def beat(self) -> None:
        """The loop made a turn."""
        now = self._clock()
        with self._lock:
            self._last_beat = now
            due = now - self._last_write >= WRITE_INTERVAL_S
        if due:
            self._write()

    def problem(self, component: str, reason: str, *, restart_helps: bool = True) -> None:
        """`component` (serial, redis, mqtt, ...) is not working, for `reason`.

        `restart_helps=False` marks a problem that a restart of this process cannot fix and
        would make worse (ingest losing its buffer while Redis is away; its clock behind, when a
        restart would only add a gap): it makes the service
        unhealthy, but never makes the watchdog stop it, and while it lasts no other problem
        does either.
        """
        with self._lock:
            previous = self._problems.get(component)
            changed = previous is None or previous.reason != reason
            since = self._clock() if previous is None else previous.since
            self._problems[component] = _Problem(reason, since, restart_helps)
        if changed:
            self._write()

    def clear(self, component: str) -> None:
        with self._lock:
            changed = self._problems.pop(component, None) is not None
        if changed:
            self._write()

    def state(self) -> HealthState:
        now = self._clock()
        with self._lock:
            problems = sorted(self._problems.items())
            reason = "; ".join(f"{c}: {p.reason}" for c, p in problems)
            # A problem a restart would make worse (ingest's buffer while Redis is away) holds
            # the exit back, whatever else is wrong meanwhile.
            restart_hurts = any(not p.restart_helps for _, p in problems)
            restart_since = (
                None
                if restart_hurts
                else min((p.since for _, p in problems if p.restart_helps), default=None)
            )
            return HealthState(
                service=self.service,
                ok=not problems,
                reason=reason,
                beat_age_s=now - self._last_beat,
                unhealthy_for_s=0.0 if restart_since is None else now - restart_since,
            )

    def _write(self) -> None:
        if self._file is None:
            return
        with self._write_lock:  # the loop and other threads (sink, paho) both write
            self._write_file(self._file)

    def _write_file(self, path: Path) -> None:
        state = self.state()
        record = {
            "service": state.service,
            "pid": os.getpid(),
            "beat_at": self._wall_clock() - state.beat_age_s,
            "ok": state.ok,
            "reason": state.reason,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            if not self._write_failed:
                log.warning("health_file_unwritable", path=str(path), error=str(exc))
            self._write_failed = True
            return
        with self._lock:
            self._last_write = self._clock()
        self._write_failed = False


def read_health_file(path: Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, explanation) from a health file, for `gateway-healthcheck`."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        beat_at = float(record["beat_at"])
        ok = bool(record["ok"])
        reason = str(record.get("reason", ""))
        service = str(record.get("service", "service"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no usable health file at {path}: {exc}"
    age = (time.time() if now is None else now) - beat_at
    if age > max_age_s:
        return False, f"{service} made no progress for {age:.0f} s (limit {max_age_s:g} s)"
    if not ok:
        return False, f"{service} unhealthy: {reason}"
    return True, f"{service} healthy, last progress {age:.1f} s ago"


class Watchdog:
    """Ends the process when the loop is wedged or has been unhealthy for too long."""

    def __init__(
        self,
        health: Health,
        stop: StopSignal,
        *,
        watchdog_s: float,
        unhealthy_exit_s: float,
        check_interval_s: float = 1.0,
        hard_exit: Callable[[int], object] = os._exit,
    ) -> None:
        self._health = health
        self._stop = stop
        self._watchdog_s = watchdog_s
        self._unhealthy_exit_s = unhealthy_exit_s
        self._interval_s = check_interval_s
        self._hard_exit = hard_exit
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            state = self._health.state()
            if state.beat_age_s > self._watchdog_s:
                log.critical("watchdog_expired", stalled_s=round(state.beat_age_s, 1))
                self._hard_exit(EXIT_WEDGED)
                return
            if state.unhealthy_for_s > self._unhealthy_exit_s:
                log.error(
                    "unhealthy_too_long",
                    reason=state.reason,
                    unhealthy_for_s=round(state.unhealthy_for_s, 1),
                )
                self._stop.set(UNHEALTHY_STOP_REASON)
                # The service now stops by itself; if its shutdown hangs, nothing else ends it.
                time.sleep(self._watchdog_s)
                log.critical("shutdown_hung", waited_s=self._watchdog_s)
                self._hard_exit(EXIT_UNHEALTHY)
                return
