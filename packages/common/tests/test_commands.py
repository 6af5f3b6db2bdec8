"""The command state machine, pure: examples of every path, and properties over random events."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.commands import (
    ALLOWED,
    FINAL_STATES,
    Answered,
    Cancelled,
    Command,
    CommandError,
    CommandState,
    Event,
    Expired,
    Reported,
    Sent,
    apply,
    cancel_refusal,
    default_timeout_s,
    validate_device_id,
    validate_interval,
)

T0 = 1_764_000_000.0


def queued(interval_s: int = 300, enabled: bool = True, timeout_s: float = 1860.0) -> Command:
    return Command.queued(
        "7",
        "323636300039004C",
        interval_s,
        enabled,
        source="gatewayctl",
        at=T0,
        timeout_s=timeout_s,
    )


def step(command: Command, event: Event) -> Command:
    after = apply(command, event)
    assert after is not None, (command.state, event)
    return after


# ------------------------------------------------------------------ examples


def test_the_happy_path() -> None:
    command = queued()
    assert command.state is CommandState.QUEUED
    assert command.deadline == T0 + 1860
    sent = step(command, Sent(T0 + 1, tag=42))
    assert (sent.state, sent.tag, sent.attempts, sent.sent_at) == (CommandState.SENT, 42, 1, T0 + 1)
    assert sent.deadline == T0 + 1 + 1860  # counted from the write
    response = step(sent, Answered(T0 + 300, end_of_procedure=False, error=False))
    assert (response.state, response.responses) == (CommandState.SENT, 1)
    acked = step(response, Answered(T0 + 300.1, end_of_procedure=True, error=False))
    assert (acked.state, acked.acknowledged_at) == (CommandState.ACKNOWLEDGED, T0 + 300.1)
    confirmed = step(acked, Reported(T0 + 300.5, 300, enabled=True))
    assert confirmed.state is CommandState.CONFIRMED
    assert confirmed.deadline is None
    assert confirmed.ended_at == T0 + 300.5
    assert [c.version for c in (command, sent, response, acked, confirmed)] == [0, 1, 2, 3, 4]


def test_an_error_flag_fails_it() -> None:
    sent = step(queued(), Sent(T0 + 1, tag=1))
    failed = step(sent, Answered(T0 + 5, end_of_procedure=True, error=True))
    assert failed.state is CommandState.FAILED
    assert "error flag" in failed.reason


def test_new_values_confirm_even_when_the_acknowledgement_was_lost() -> None:
    sent = step(queued(), Sent(T0 + 1, tag=1))
    assert step(sent, Reported(T0 + 9, 300, enabled=True)).state is CommandState.CONFIRMED


def test_reports_from_before_the_write_or_with_old_values_while_sent_say_nothing() -> None:
    command = queued()
    assert apply(command, Reported(T0 + 2, 300, enabled=True)) is None  # not sent yet
    sent = step(command, Sent(T0 + 10, tag=1))
    assert apply(sent, Reported(T0 + 9, 300, enabled=True)) is None  # received before the write
    assert apply(sent, Reported(T0 + 11, 600, enabled=True)) is None  # not delivered yet


def test_other_values_after_the_acknowledgement_fail_it() -> None:
    acked = step(step(queued(), Sent(T0 + 1, tag=1)), Answered(T0 + 5, True, False))  # noqa: FBT003
    assert apply(acked, Reported(T0 + 4, 600, enabled=True)) is None  # older than the ack
    failed = step(acked, Reported(T0 + 6, 600, enabled=False))
    assert failed.state is CommandState.FAILED
    assert failed.reason == "the device reports interval 600 s, disabled after acknowledging"


def test_a_resend_counts_and_restarts_the_deadline() -> None:
    sent = step(queued(), Sent(T0 + 1, tag=3))
    again = step(sent, Sent(T0 + 100, tag=3))
    assert (again.state, again.attempts, again.deadline) == (CommandState.SENT, 2, T0 + 1960)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ((), "not sent within 1860 s"),
        ((Sent(T0 + 1, 1),), "no answer from the device within 1860 s"),
        ((Sent(T0 + 1, 1), Answered(T0 + 2, True, False)), "acknowledged, but no EnergyConfig"),  # noqa: FBT003
    ],
)
def test_expiry_in_each_open_state(events: tuple[Event, ...], reason: str) -> None:
    command = queued()
    for event in events:
        command = step(command, event)
    assert command.deadline is not None
    assert apply(command, Expired(command.deadline - 0.001)) is None
    expired = step(command, Expired(command.deadline))
    assert expired.state is CommandState.EXPIRED
    assert expired.reason.startswith(reason)


def test_cancel_only_while_queued() -> None:
    command = queued()
    assert cancel_refusal(command) is None
    cancelled = step(command, Cancelled(T0 + 1))
    assert (cancelled.state, cancelled.reason) == (CommandState.FAILED, "cancelled by an operator")
    sent = step(queued(), Sent(T0 + 1, 1))
    assert apply(sent, Cancelled(T0 + 2)) is None
    assert "the modem has it" in (cancel_refusal(sent) or "")
    assert "has ended" in (cancel_refusal(cancelled) or "")


def test_an_error_for_an_earlier_write_says_nothing_about_the_latest() -> None:
    again = step(step(queued(), Sent(T0 + 1, tag=1)), Sent(T0 + 50, tag=2))
    assert apply(again, Answered(T0 + 60, end_of_procedure=True, error=True, tag=1)) is None
    failed = step(again, Answered(T0 + 61, end_of_procedure=True, error=True, tag=2))
    assert failed.state is CommandState.FAILED
    # the earlier write did reach the sensor: its completion acknowledges the command
    acked = step(again, Answered(T0 + 62, end_of_procedure=True, error=False, tag=1))
    assert acked.state is CommandState.ACKNOWLEDGED


def test_late_answers_are_ignored() -> None:
    acked = step(step(queued(), Sent(T0 + 1, tag=1)), Answered(T0 + 5, True, False))  # noqa: FBT003
    assert apply(acked, Answered(T0 + 6, end_of_procedure=True, error=True)) is None
    assert apply(queued(), Answered(T0 + 6, end_of_procedure=True, error=False)) is None


def test_rejected_is_final_from_the_start() -> None:
    command = Command.rejected(
        "8", "ABC", "device ABC is not in the registry", source="mqtt", at=T0
    )
    assert command.final
    assert command.deadline is None
    assert command.ended_at == T0


@pytest.mark.parametrize("value", [10, 86_400, 600])
def test_intervals_in_range(value: int) -> None:
    assert validate_interval(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (9, "outside 10 ... 86400 s"),
        (86_401, "outside"),
        (-5, "outside"),
        (10.5, "whole number"),
        (True, "whole number"),
        ("600", "whole number"),
        (None, "whole number"),
    ],
)
def test_intervals_refused(value: object, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        validate_interval(value)


@pytest.mark.parametrize("device_id", ["", "abc", "0x12", "12345678901234567", "A+B", "A/B"])
def test_device_ids_refused(device_id: str) -> None:
    with pytest.raises(CommandError, match="not a DEVICE_ID"):
        validate_device_id(device_id)


def test_default_timeout() -> None:
    assert default_timeout_s(600) == 1860


# ------------------------------------------------------------------ properties

times = st.floats(T0 - 10, T0 + 10_000, allow_nan=False)
events = st.one_of(
    st.builds(Sent, times, st.integers(0, 255)),
    st.builds(Answered, times, st.booleans(), st.booleans()),
    st.builds(Reported, times, st.sampled_from([300, 600]), st.booleans()),
    st.builds(Expired, times),
    st.builds(Cancelled, times),
)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    """A command reached from `queued` by random events (so its fields are consistent)."""
    command = queued(interval_s=draw(st.sampled_from([300, 600])), enabled=draw(st.booleans()))
    for event in draw(st.lists(events, max_size=6)):
        command = apply(command, event) or command
    return command


@given(commands(), events)
def test_every_change_follows_an_allowed_edge(command: Command, event: Event) -> None:
    after = apply(command, event)
    if after is None:
        return
    assert after.state in ALLOWED[command.state]
    assert after.version == command.version + 1
    assert after.attempts == command.attempts + (1 if isinstance(event, Sent) else 0)
    assert (after.deadline is None) == after.final == (after.ended_at is not None)
    assert after.updated_at == event.at
    if after.state is CommandState.CONFIRMED:
        assert isinstance(event, Reported)
        assert (event.interval_s, event.enabled) == command.values
        assert command.sent_at is not None
        assert event.at >= command.sent_at
    if after.state is CommandState.EXPIRED:
        assert command.deadline is not None
        assert event.at >= command.deadline
    if after.state is CommandState.ACKNOWLEDGED:
        assert isinstance(event, Answered)
        assert event.end_of_procedure
        assert not event.error


@given(commands(), events)
def test_final_states_absorb_every_event(command: Command, event: Event) -> None:
    if command.final:
        assert apply(command, event) is None


@given(st.lists(events, max_size=20))
def test_a_command_takes_at_most_one_final_state(sequence: list[Event]) -> None:
    command = queued()
    finals = []
    for event in sequence:
        after = apply(command, event)
        if after is not None and after.state is not command.state and after.final:
            finals.append(after.state)
        command = after or command
    assert len(finals) <= 1
    assert (command.state in FINAL_STATES) == bool(finals)


@given(commands())
def test_a_reached_command_keeps_its_values(command: Command) -> None:
    start = queued(interval_s=command.interval_s, enabled=command.enabled)
    assert replace(command, **{f: getattr(start, f) for f in ("state", "version")}).values == (
        start.values
    )
