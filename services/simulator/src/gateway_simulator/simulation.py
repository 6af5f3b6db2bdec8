"""The modem's life: boot, then forward each sensor message when it is due."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from gateway_common.lifecycle import StopSignal
    from gateway_simulator.modem import Modem
    from gateway_simulator.timeline import Timeline
    from gateway_simulator.transport import Transport

__all__ = ["RunStats", "run"]

log = get_logger(__name__)


@dataclass(slots=True)
class RunStats:
    frames_sent: int = 0
    frames_lost: int = 0

    @property
    def frames(self) -> int:
        return self.frames_sent + self.frames_lost


def run(
    modem: Modem,
    timeline: Timeline,
    transport: Transport,
    stop: StopSignal,
    frames_limit: int = 0,
) -> RunStats:
    """Send REBOOTED, then the timeline's messages on time, until stopped or `frames_limit`."""
    stats = RunStats()
    started = time.monotonic()
    _send(transport, modem.boot(), stats, counter=modem.counter, kind="rebooted", device_id="")
    while not stop.is_set() and not (frames_limit and stats.frames >= frames_limit):
        event = timeline.next_event()
        delay_s = started + event.at_s - time.monotonic()
        if delay_s > 0 and stop.wait(delay_s):
            break
        frame = modem.alp_data(event.alp)
        _send(
            transport,
            frame,
            stats,
            counter=modem.counter,
            kind=event.kind.value,
            device_id=event.device_id,
        )
    log.info("simulation_stopped", sent=stats.frames_sent, lost=stats.frames_lost)
    return stats


def _send(
    transport: Transport, frame: bytes, stats: RunStats, *, counter: int, kind: str, device_id: str
) -> None:
    if transport.write(frame):
        stats.frames_sent += 1
        log.debug("frame_sent", counter=counter, kind=kind, device_id=device_id, bytes=len(frame))
    else:
        stats.frames_lost += 1
        log.info("frame_lost", counter=counter, kind=kind, device_id=device_id, bytes=len(frame))
