"""The modem's frame counter rule: wrap, reboot, resume, and the gaps between frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway_dash7 import (
    FIRST_COUNTER_AFTER_BOOT,
    CounterPosition,
    CounterTracker,
    Gap,
    MessageType,
    may_have_wrapped,
    next_counter,
)

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


def _seeded(
    counter: int, sequence: list[tuple[int, int]], *, after_reboot: bool = False
) -> list[Gap]:
    tracker = CounterTracker(CounterPosition(counter, after_reboot=after_reboot))
    return [g for c, t in sequence if (g := tracker.observe(c, t)) is not None]


def test_a_seeded_tracker_counts_the_gap_across_the_restart() -> None:
    assert _seeded(10, [(14, ALP), (15, ALP), (17, ALP)]) == [
        Gap(expected=11, received=14, missed=3, after_restart=True),
        Gap(expected=16, received=17, missed=1, after_restart=False),
    ]
    assert _seeded(250, [(2, MessageType.LOGGING)]) == [
        Gap(expected=251, received=2, missed=7, after_restart=True)
    ]


def test_a_seeded_tracker_without_losses_sees_no_gap() -> None:
    assert _seeded(255, [(0, ALP), (1, ALP)]) == []


def test_a_seeded_tracker_accepts_a_reboot() -> None:
    assert _seeded(77, [(1, REBOOTED), (2, ALP)]) == []
    assert _seeded(77, [(0, REBOOTED), (1, ALP)]) == []
    # the last frame before the restart was REBOOTED: the next one may be 1
    assert _seeded(0, [(1, ALP)], after_reboot=True) == []


def test_position_follows_every_frame() -> None:
    tracker = CounterTracker()
    assert tracker.position is None
    assert tracker.last is None
    tracker.observe(5, REBOOTED)
    assert tracker.position == CounterPosition(5, after_reboot=True)
    tracker.observe(6, MessageType.LOGGING)
    assert tracker.position == CounterPosition(6, after_reboot=False)
    assert tracker.last == 6


def test_next_counter_wraps_as_a_uint8() -> None:
    assert [next_counter(c) for c in (0, 1, 254, 255)] == [1, 2, 255, 0]
    assert FIRST_COUNTER_AFTER_BOOT == 1


@given(st.integers(0, 255), st.lists(st.sampled_from(MessageType), max_size=600))
def test_a_modem_counting_by_the_rule_never_shows_a_gap(
    start: int, kinds: list[MessageType]
) -> None:
    """Frames counted as the modem counts them (the next counter, 1 after a boot): no gap."""
    tracker = CounterTracker(CounterPosition(start, after_reboot=False))
    counter = start
    for kind in kinds:
        counter = FIRST_COUNTER_AFTER_BOOT if kind == REBOOTED else next_counter(counter)
        assert tracker.observe(counter, kind) is None


@given(st.integers(0, 255), st.integers(1, 255))
def test_the_gap_counts_the_frames_skipped(start: int, skipped: int) -> None:
    tracker = CounterTracker()
    tracker.observe(start, ALP)
    received = (start + 1 + skipped) % 256
    gap = tracker.observe(received, ALP)
    assert gap == Gap(expected=next_counter(start), received=received, missed=skipped)


def test_a_downtime_long_enough_for_256_frames_makes_the_gap_a_lower_bound() -> None:
    # 256 frames of 7 bytes, 10 bits each at 115200 baud: about 0.156 s
    assert not may_have_wrapped(0.15, 115_200)
    assert may_have_wrapped(0.16, 115_200)
    assert not may_have_wrapped(1.0, 9600 // 10)
