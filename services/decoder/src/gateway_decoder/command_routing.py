"""The modem's answers and the devices' EnergyConfigFiles, routed to the commands' states.

An answer (a frame carrying a TagResponse, protocol.md section 5.2) names its command by tag:
`{p}:commands:tags` holds the command last written with each tag, and keeps it after the
command has ended, so a late answer finds its command and changes nothing. Only a tag no
command was ever written with is a dead letter. An EnergyConfigFile (a record of kind
`energy_config`, alone or carried by a response) is the device's report: it confirms the
device's active command when it shows the command's values (or fails it, after an
acknowledgement, when it shows others).

Every change goes through the command store's compare-and-set script, before the frame is
acknowledged: a frame redelivered after a crash applies its event again, and the state machine
makes that a no-op (a repeated answer or report changes nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway_common.commands import Answered, Reported
from gateway_common.logs import get_logger

if TYPE_CHECKING:
    from gateway_common.command_store import CommandStore, Transition
    from gateway_common.entries import Record
    from gateway_common.records import CommandAnswer
    from gateway_decoder.metrics import DecoderMetrics

__all__ = ["CommandRouting"]

log = get_logger(__name__)


def _log_transition(event: str, done: Transition, **extra: object) -> None:
    command = done.after
    report = log.warning if command.state in ("failed", "expired") else log.info
    report(
        event,
        command_id=command.id,
        device_id=command.device_id,
        state=str(command.state),
        was=str(done.before.state),
        reason=command.reason or None,
        **extra,
    )


class CommandRouting:
    def __init__(self, store: CommandStore, metrics: DecoderMetrics) -> None:
        self._store = store
        self._metrics = metrics

    def answer(self, answer: CommandAnswer) -> str | None:
        """Apply the modem's answer to its command; the dead-letter reason when it has none."""
        command_id = self._store.tag_owner(answer.tag)
        if command_id is None:
            self._metrics.command_answers.labels(result="unknown_tag").inc()
            return f"command answer for unknown tag {answer.tag}"
        event = Answered(answer.received_at, answer.end_of_procedure, answer.error, answer.tag)
        done = self._store.apply(command_id, event)
        if done is None:
            self._metrics.command_answers.labels(result="late").inc()
            log.info(
                "command_answer_late",
                command_id=command_id,
                tag=answer.tag,
                end_of_procedure=answer.end_of_procedure,
                error=answer.error,
            )
        else:
            self._metrics.command_answers.labels(result="applied").inc()
            _log_transition(
                "command_answered",
                done,
                tag=answer.tag,
                end_of_procedure=answer.end_of_procedure,
                error=answer.error,
                responder=answer.device_id,
            )
        return None

    def report(self, record: Record) -> None:
        """A device's EnergyConfigFile: its values, for the command it has (if any)."""
        interval_s = record.fields.get("interval_s")
        enabled = record.fields.get("enabled")
        if not isinstance(interval_s, int) or not isinstance(enabled, bool):
            return
        command_id = self._store.active(record.device_id)
        if command_id is None:
            return
        done = self._store.apply(command_id, Reported(record.received_at, interval_s, enabled))
        if done is not None:
            self._metrics.command_reports.labels(result=str(done.after.state)).inc()
            _log_transition("command_reported", done, interval_s=interval_s, enabled=enabled)
