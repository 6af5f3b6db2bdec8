"""The broker's answers to what is in flight: which record is delivered, which goes again.

A record is delivered when the broker accepted its DDATA (a PUBACK reason code below 0x80) and
the DBIRTH it went out behind on that connection, if any. Otherwise it counts one attempt: when
the broker refuses its DDATA, or refuses that DBIRTH (the DDATA is then not delivered, whatever
its own answer; see inflight.py). A record refused `max_attempts` times goes to the dead letters
with the broker's reason; until then it is put back among the records ready to go, in stream
order, so each device's readings still go out in order.

A broker may also refuse a publish by closing the connection with a DISCONNECT (MQTT v5 allows
it instead of a PUBACK; some brokers do so on an ACL denial). Such a DISCONNECT right after a
record went out alone counts as a refusal of that record (`closed_on`); the publisher sends one
record at a time after a connection is lost with records in flight, so that the one at fault is
found (publisher.py, probing). A bare close, a network loss or a broker restart counts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway_common.logs import get_logger
from gateway_common.streams import entry_id_key

if TYPE_CHECKING:
    from collections import deque

    from gateway_publisher.inflight import InFlight
    from gateway_publisher.intake import Ready
    from gateway_publisher.mqtt_link import PublishOutcome
    from gateway_publisher.outbox import Outbox
    from gateway_publisher.registry import DeviceRegistry

__all__ = ["Answers", "put_back"]

log = get_logger(__name__)


def put_back(queue: deque[Ready], ready: Ready) -> None:
    """Insert `ready` among the records waiting for the window, in stream order."""
    key = entry_id_key(ready.entry.entry_id)
    for index, other in enumerate(queue):
        if entry_id_key(other.entry.entry_id) > key:
            queue.insert(index, ready)
            return
    queue.append(ready)


def _reason(refused: str, outcome: PublishOutcome) -> str:
    return f"{refused}: {outcome.reason} (0x{outcome.reason_code:02X})"


class Answers:
    def __init__(
        self,
        inflight: InFlight,
        registry: DeviceRegistry,
        outbox: Outbox,
        max_attempts: int,
    ) -> None:
        self._inflight = inflight
        self._registry = registry
        self._outbox = outbox
        self._max_attempts = max_attempts
        self._attempts: dict[str, int] = {}
        """Refused attempts per entry id."""

    def handle(self, outcome: PublishOutcome, queue: deque[Ready]) -> Ready | None:
        """The record `outcome` delivers, or None. What was not delivered goes back into
        `queue` (the records ready to go) or to the dead letters."""
        sent = self._inflight.pop(outcome.mid)
        if sent is None or sent.taken_back:
            return None
        ready = sent.ready
        if ready is None:
            self._birth_answered(outcome, sent.device_id, queue)
            return None
        if sent.birth_mid is not None:
            # Answered before its DBIRTH (MQTT has the broker answer in order): not delivered.
            log.warning("ddata_answered_before_dbirth", device_id=sent.device_id)
            put_back(queue, ready)
            return None
        if not outcome.ok:
            self._refused(ready, _reason("broker refused", outcome), queue)
            return None
        self._attempts.pop(ready.entry.entry_id, None)
        return ready

    def _birth_answered(self, outcome: PublishOutcome, device_id: str, queue: deque[Ready]) -> None:
        behind = self._inflight.birth_answered(outcome.mid, ok=outcome.ok)
        if outcome.ok:
            return
        # Not born on this connection: a new DBIRTH goes before the device's next DDATA, and
        # the DDATA already sent behind this one count as refused.
        self._registry.forget_birth(device_id)
        reason = _reason("broker refused DBIRTH", outcome)
        log.warning("dbirth_refused", device_id=device_id, reason=reason, ddata=len(behind))
        for ready in behind:
            self._refused(ready, reason, queue)
        if not behind:
            # Sent alone (a broker that takes one message at a time): the record waiting for it
            # counts, or a DBIRTH refused for good would be sent again and again, forever.
            waiting = next((r for r in queue if r.record.device_id == device_id), None)
            if waiting is not None:
                queue.remove(waiting)
                self._refused(waiting, reason, queue)

    def closed_on(self, ready: Ready, reason: str, queue: deque[Ready]) -> None:
        """The broker closed the connection while `ready` was the only record in flight."""
        self._refused(ready, f"broker closed the connection on it: {reason}", queue)

    def undeliverable(self, ready: Ready, reason: str) -> None:
        """A record that can never be published (too large for the broker): dead at once."""
        attempts = self._attempts.pop(ready.entry.entry_id, 0)
        log.warning(
            "publish_impossible",
            entry_id=ready.entry.entry_id,
            device_id=ready.record.device_id,
            reason=reason,
        )
        self._outbox.dead(ready.entry, reason, "too_large", ready.record, attempts)

    def _refused(self, ready: Ready, reason: str, queue: deque[Ready]) -> None:
        """Count a refused attempt: put the record back in `queue`, or dead-letter it."""
        entry_id = ready.entry.entry_id
        attempts = self._attempts.get(entry_id, 0) + 1
        log.warning(
            "publish_refused",
            entry_id=entry_id,
            device_id=ready.record.device_id,
            reason=reason,
            attempts=attempts,
        )
        if attempts >= self._max_attempts:
            self._attempts.pop(entry_id, None)
            self._outbox.dead(ready.entry, reason, "broker_refused", ready.record, attempts)
        else:
            self._attempts[entry_id] = attempts
            put_back(queue, ready)
