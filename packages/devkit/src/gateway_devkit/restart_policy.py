"""Docker's `restart: unless-stopped` for a private server: what docker-compose.yml gives Redis.

When the server exits by itself (Redis exits when it cannot append to its AOF under
`appendfsync always`), it is started again after a delay that doubles from 100 ms at each
restart, as Docker's does, and goes back to 100 ms once a run lasted `reset_after_s` (Docker:
10 s). Docker caps the delay at a minute; a test caps it lower (`max_delay_s`) and says so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_devkit.servers import ServerError

if TYPE_CHECKING:
    from gateway_devkit.servers import PrivateBroker, PrivateRedis

__all__ = ["Restart", "RestartPolicy"]

_FIRST_DELAY_S = 0.1
_WATCH_S = 0.1


@dataclass(frozen=True, slots=True)
class Restart:
    exited_at: float
    """time.monotonic() when the exit was seen."""
    exit_code: int | None
    ran_s: float
    """How long that run had lasted."""
    delay_s: float
    started: bool
    """False: it did not come up (it exited again while starting, or did not answer)."""


class RestartPolicy:
    """Watches `server` from a thread of its own between `start()` and `stop()`; every restart
    is in `restarts`. Stop the policy before stopping the server on purpose."""

    def __init__(
        self,
        server: PrivateRedis | PrivateBroker,
        *,
        max_delay_s: float = 60.0,
        reset_after_s: float = 10.0,
    ) -> None:
        self._server = server
        self._max_delay_s = max_delay_s
        self._reset_after_s = reset_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restart-policy", daemon=True)
        self._lock = threading.Lock()
        self._restarts: list[Restart] = []
        self.error: BaseException | None = None

    @property
    def restarts(self) -> list[Restart]:
        with self._lock:
            return list(self._restarts)

    def start(self) -> RestartPolicy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        delay = _FIRST_DELAY_S
        started_at = time.monotonic()
        # The last start failed (a server that exits before it listens is left with no
        # process): try again, as Docker would.
        failed = False
        try:
            while not self._stop.is_set():
                process = self._server.process
                running = process is not None and process.poll() is None
                if running or (process is None and not failed):
                    self._stop.wait(_WATCH_S)
                    continue
                exited_at = time.monotonic()
                ran_s = exited_at - started_at
                if ran_s >= self._reset_after_s:
                    delay = _FIRST_DELAY_S
                if self._stop.wait(delay):
                    return
                failed = False
                try:
                    self._server.start()
                except ServerError:
                    failed = True
                started_at = time.monotonic()
                code = None if process is None else process.returncode
                with self._lock:
                    self._restarts.append(Restart(exited_at, code, ran_s, delay, not failed))
                delay = min(delay * 2, self._max_delay_s)
        except BaseException as exc:  # reported by the test through `error`
            self.error = exc
