"""DCMD messages in, downlink commands out (with `GATEWAY_DOWNLINK=true`).

A DCMD is read (dcmd.py), validated like every source's request and stored, queued or rejected
with its reason (gateway_common.command_requests): rejections are logged, counted
(`gateway_dcmd_messages_total{result="rejected"}`, and in `gateway_commands_total`) and shown by
`gatewayctl config list`; nothing a DCMD says can crash the publisher. The message is
acknowledged to the broker (PUBACK) only once its command is stored: while Redis is away, the
messages wait here, in order, and are stored when it is back. Delivery is at least once: a DCMD
the broker sends again (after a reconnection) makes a second command with the same values,
which writes the same file again.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from gateway_common.command_requests import reject_request, request_command
from gateway_common.commands import CommandState
from gateway_common.logs import get_logger
from gateway_publisher.dcmd import DcmdError, parse_dcmd

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis
    from prometheus_client import Counter

    from gateway_common.command_store import CommandStore
    from gateway_common.commands import Command
    from gateway_publisher.mqtt_link import Incoming
    from gateway_publisher.topics import TopicScheme

__all__ = ["SOURCE", "CommandIntake"]

log = get_logger(__name__)

SOURCE = "mqtt"


class CommandIntake:
    def __init__(
        self,
        store: CommandStore,
        client: redis.Redis,
        scheme: TopicScheme,
        counter: Counter,
        *,
        ack: Callable[[Incoming], None],
        clock: Callable[[], float],
        timeout_s: float | None = None,
        default_interval_s: float,
    ) -> None:
        self._store = store
        self._client = client
        self._scheme = scheme
        self._counter = counter
        self._ack = ack
        self._clock = clock
        self._timeout_s = timeout_s
        self._default_interval_s = default_interval_s
        self._waiting: deque[Incoming] = deque()

    def received(self, incoming: Incoming) -> None:
        """A DCMD arrived: it waits for `store_waiting` (no Redis here)."""
        self._waiting.append(incoming)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def store_waiting(self) -> None:
        """Store every waiting DCMD as a command, in order; raises the Redis error (the
        message then stays first, not acknowledged)."""
        while self._waiting:
            incoming = self._waiting[0]
            command = self._command(incoming)
            self._waiting.popleft()
            self._ack(incoming)
            result = "rejected" if command.state is CommandState.REJECTED else "accepted"
            self._counter.labels(result=result).inc()
            report = log.warning if command.state is CommandState.REJECTED else log.info
            report(
                f"dcmd_{result}",
                command_id=command.id,
                device_id=command.device_id,
                interval_s=command.interval_s,
                enabled=command.enabled,
                reason=command.reason or None,
                topic=incoming.topic[:200],
            )

    def _command(self, incoming: Incoming) -> Command:
        now = self._clock()
        try:
            request = parse_dcmd(incoming.topic, incoming.payload, self._scheme)
        except DcmdError as exc:
            return reject_request(self._store, exc.device_id, str(exc), source=SOURCE, now=now)
        return request_command(
            self._store,
            self._client,
            device_id=request.device_id,
            interval_s=request.interval_s,
            enabled=request.enabled,
            source=SOURCE,
            now=now,
            timeout_s=self._timeout_s,
            default_interval_s=self._default_interval_s,
        )
