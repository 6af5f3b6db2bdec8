from __future__ import annotations

from gateway_common.serial_protocol import MessageType
from gateway_ingest.counters import CounterTracker, Gap

ALP = MessageType.ALP_DATA
REBOOTED = MessageType.REBOOTED


def _gaps(sequence: list[tuple[int, int]]) -> list[Gap]:
    tracker = CounterTracker()
    return [g for c, t in sequence if (g := tracker.observe(c, t)) is not None]


def test_consecutive_counters_have_no_gap() -> None:
    assert _gaps([(c, ALP) for c in range(10, 20)]) == []


def test_first_frame_sets_the_baseline() -> None:
    assert _gaps([(200, ALP), (201, ALP)]) == []


def test_wrap_255_to_0_is_not_a_gap() -> None:
    assert _gaps([(254, ALP), (255, ALP), (0, ALP), (1, ALP)]) == []


def test_gap_counts_missed_frames() -> None:
    assert _gaps([(1, ALP), (2, ALP), (5, ALP)]) == [Gap(expected=3, received=5, missed=2)]


def test_gap_across_the_wrap() -> None:
    assert _gaps([(253, ALP), (2, ALP)]) == [Gap(expected=254, received=2, missed=4)]


def test_repeated_counter_counts_as_a_full_cycle_gap() -> None:
    assert _gaps([(9, ALP), (9, ALP)]) == [Gap(expected=10, received=9, missed=255)]


def test_reboot_restarts_the_sequence() -> None:
    # the REBOOTED frame itself is the first frame after boot (counter 1): no gap
    assert _gaps([(77, ALP), (1, REBOOTED), (2, MessageType.LOGGING), (3, ALP)]) == []


def test_after_reboot_the_next_frame_may_restart_at_1() -> None:
    assert _gaps([(77, ALP), (0, REBOOTED), (1, ALP), (2, ALP)]) == []
    assert _gaps([(77, ALP), (9, REBOOTED), (1, ALP)]) == []


def test_gap_after_reboot_is_still_counted() -> None:
    assert _gaps([(77, ALP), (1, REBOOTED), (4, ALP)]) == [Gap(expected=2, received=4, missed=2)]


def test_other_message_types_advance_the_counter() -> None:
    assert _gaps([(1, ALP), (2, MessageType.LOGGING), (3, MessageType.PING_RESPONSE), (4, 9)]) == []
