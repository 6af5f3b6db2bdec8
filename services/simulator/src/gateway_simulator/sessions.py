"""The simulated modem's downlink: the host's requests, held for a sensor until it next speaks.

The host writes tagged requests (protocol.md section 5.1) on the serial link. The modem parses
them with the codec and keeps each in a dormant session for its addressee: when that sensor next
sends an uplink, the modem delivers the write in that exchange. The sensor applies it (its new
interval and `enabled` from then on), and the modem answers the host: the sensor's response
(its D7 status and a TagResponse, end-of-procedure 0), then the completion (a status of LEN 0
and `A3 tt`); the sensor then sends its EnergyConfigFile with the new values.

Like the Sub-IoT modem, it keeps one master session: a request to another addressee while one
is held is refused at once (`E3 tt`); a request to the same addressee (the host wrote it again
after a restart, under a new tag) replaces the one held. A session whose dormant timeout passes
ends with `E3 tt`.

Sensors can be told to refuse a write (the completion carries the error flag: `E3 tt`) or to
never answer (nothing comes back at all, as when the modem's answers are lost: the host's
command expires). What a real sensor does when it is disabled is not known here: a disabled
simulated sensor stops its EnergyFiles and sends its EnergyConfigFile every interval instead, so
that it can still be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_common.logs import get_logger
from gateway_dash7 import (
    ENERGY_CONFIG_FILE_ID,
    AlpError,
    ModemAnswer,
    WriteRequest,
    decode_file,
    device_id,
)
from gateway_dash7 import EnergyConfigFile as ConfigFile

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gateway_simulator.sensors import Sensor

__all__ = ["Held", "Sessions"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Held:
    """A request the modem holds for a sensor, since `at_s` (seconds since boot)."""

    request: WriteRequest
    at_s: float

    @property
    def deadline_s(self) -> float:
        return self.at_s + self.request.configuration.dormant_timeout_s


class Sessions:
    """The modem's dormant sessions; every method returns the ALP commands to send the host."""

    def __init__(
        self,
        sensors: Iterable[Sensor],
        *,
        refuse: Iterable[str] = (),
        silent: Iterable[str] = (),
    ) -> None:
        self._sensors = {sensor.uid: sensor for sensor in sensors}
        self._refuse = set(refuse)
        self._silent = set(silent)
        self._held: Held | None = None

    @property
    def held(self) -> Held | None:
        return self._held

    def request(self, alp: bytes, now_s: float) -> list[bytes]:
        """An ALP_DATA frame from the host: hold the request, or refuse it at once."""
        try:
            request = WriteRequest.parse(alp)
        except AlpError as exc:
            log.warning("host_request_unreadable", error=str(exc), alp=alp.hex())
            return []
        address = request.configuration.addressee.address
        held = self._held
        if held is not None and held.request.configuration.addressee.address != address:
            log.warning(
                "host_request_refused_busy",
                tag=request.tag_id,
                device_id=device_id(address),
                holding=held.request.tag_id,
            )
            return [_completion(request.tag_id, error=True)]
        self._held = Held(request, now_s)
        log.info(
            "host_request_held",
            tag=request.tag_id,
            device_id=device_id(address),
            dormant_timeout_s=request.configuration.dormant_timeout_s,
            again=held is not None,
        )
        return []

    def drop(self) -> int:
        """A PING_REQUEST frees every pending command (the host must never send one while a
        command is pending); how many were dropped."""
        dropped = int(self._held is not None)
        self._held = None
        return dropped

    def expire(self, now_s: float) -> list[bytes]:
        """A session whose dormant timeout passed ends with the error flag."""
        held = self._held
        if held is None or now_s < held.deadline_s:
            return []
        self._held = None
        log.info("host_request_timed_out", tag=held.request.tag_id)
        return [_completion(held.request.tag_id, error=True)]

    def uplink(self, sensor: Sensor) -> tuple[list[bytes], bool]:
        """The sensor just spoke: deliver what is held for it. Returns the answers for the host
        and whether the sensor took new values (it then sends its EnergyConfigFile)."""
        held = self._held
        if held is None or held.request.configuration.addressee.address != sensor.uid:
            return [], False
        self._held = None
        request = held.request
        tag = request.tag_id
        if sensor.device_id in self._silent:
            log.info("sensor_silent", device_id=sensor.device_id, tag=tag)
            return [], False
        if sensor.device_id in self._refuse or request.file_id != ENERGY_CONFIG_FILE_ID:
            log.info("sensor_refused", device_id=sensor.device_id, tag=tag)
            return [_completion(tag, error=True)], False
        try:
            config = decode_file(request.file_id, request.data)
        except ValueError as exc:
            log.info("sensor_refused", device_id=sensor.device_id, tag=tag, error=str(exc))
            return [_completion(tag, error=True)], False
        assert isinstance(config, ConfigFile)
        sensor.apply(config.interval_s, config.enabled)
        log.info(
            "sensor_configured",
            device_id=sensor.device_id,
            tag=tag,
            interval_s=config.interval_s,
            enabled=config.enabled,
        )
        response = ModemAnswer(tag, end_of_procedure=False, error=False, status=sensor.status())
        return [response.encode(), _completion(tag, error=False)], True


def _completion(tag: int, *, error: bool) -> bytes:
    return ModemAnswer(tag, end_of_procedure=True, error=error, status=None).encode()
