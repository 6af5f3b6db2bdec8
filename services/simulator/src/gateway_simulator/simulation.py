"""The modem's life: boot, then forward each sensor message when it is due.

Before each message it reads what the host wrote meanwhile (its downlink requests, sessions.py);
after a sensor's message it sends what that exchange delivered: the answers to a request held
for the sensor, then the sensor's new EnergyConfigFile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_common.logs import get_logger
from gateway_dash7 import Frame, Framer, MessageType

if TYPE_CHECKING:
    from gateway_common.lifecycle import StopSignal
    from gateway_simulator.modem import Modem
    from gateway_simulator.sessions import Sessions
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
    *,
    sessions: Sessions | None = None,
) -> RunStats:
    """Send REBOOTED, then the timeline's messages on time, until stopped or `frames_limit`."""
    line = _Line(modem, transport)
    started = time.monotonic()
    host = Framer()
    line.send(modem.boot(), "rebooted")
    while not stop.is_set() and not (frames_limit and line.stats.frames >= frames_limit):
        event = timeline.next_event()
        delay_s = started + event.at_s - time.monotonic()
        if delay_s > 0 and stop.wait(delay_s):
            break
        if sessions is not None:
            _from_host(host, line, sessions, event.at_s)
        line.send(modem.alp_data(event.alp), event.kind.value, event.device_id)
        if sessions is not None and event.sensor is not None:
            # the sensor just spoke: the modem delivers what it held for it, says how it went
            answers, configured = sessions.uplink(event.sensor)
            for alp in answers:
                line.send(modem.alp_data(alp), "answer", event.device_id)
            if configured:
                timeline.reconfigured(event.sensor, event.at_s)
    stats = line.stats
    log.info("simulation_stopped", sent=stats.frames_sent, lost=stats.frames_lost)
    return stats


def _from_host(host: Framer, line: _Line, sessions: Sessions, now_s: float) -> None:
    """Read the host's frames; answer what must be answered at once."""
    answers = []
    for item in host.feed(line.transport.read_available()):
        if not isinstance(item, Frame):
            log.warning("host_framing_error", kind=item.kind, skipped=item.skipped)
        elif item.message_type == MessageType.ALP_DATA:
            answers += sessions.request(item.payload, now_s)
        elif item.message_type == MessageType.PING_REQUEST:
            log.info("host_ping", pending_commands_freed=sessions.drop())
            line.send(line.modem.ping_response(), "ping")
        else:
            log.warning("host_frame_ignored", type_id=item.message_type, counter=item.counter)
    answers += sessions.expire(now_s)
    for alp in answers:
        line.send(line.modem.alp_data(alp), "answer")


class _Line:
    """The modem's end of the serial line: what it sends, counted."""

    def __init__(self, modem: Modem, transport: Transport) -> None:
        self.modem = modem
        self.transport = transport
        self.stats = RunStats()

    def send(self, frame: bytes, kind: str, device_id: str = "") -> None:
        counter = self.modem.counter
        if self.transport.write(frame):
            self.stats.frames_sent += 1
            log.debug(
                "frame_sent", counter=counter, kind=kind, device_id=device_id, bytes=len(frame)
            )
        else:
            self.stats.frames_lost += 1
            log.info(
                "frame_lost", counter=counter, kind=kind, device_id=device_id, bytes=len(frame)
            )
