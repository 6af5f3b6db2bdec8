"""The registry entry's encoding and the one staleness rule."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.devices import (
    DEFAULT_INTERVAL_S,
    DeviceEntry,
    RegistryError,
    is_stale,
    silence_limit_s,
)

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(
    times,
    times,
    st.integers(0, 2**40),
    st.integers(0, 255),
    st.none() | st.floats(min_value=1, max_value=1e6),
)
def test_round_trip(first: float, last: float, readings: int, lb: int, interval: float | None):
    entry = DeviceEntry(first, last, readings, lb, interval)
    assert DeviceEntry.from_bytes(entry.to_bytes()) == entry


def test_entries_written_before_the_interval_existed_still_read() -> None:
    old = msgpack.packb(
        {"first_seen": 1.0, "last_seen": 2.0, "readings": 3, "last_link_budget": 70}
    )
    assert DeviceEntry.from_bytes(old) == DeviceEntry(1.0, 2.0, 3, 70, None)


@given(st.binary(max_size=64))
def test_any_bytes_read_or_raise_registry_error(data: bytes) -> None:
    with contextlib.suppress(RegistryError):
        DeviceEntry.from_bytes(data)


@pytest.mark.parametrize("data", [b"\x90", b"\xc1", msgpack.packb({"first_seen": "x"})])
def test_unreadable(data: bytes) -> None:
    with pytest.raises(RegistryError):
        DeviceEntry.from_bytes(data)


def test_stale_after_three_intervals() -> None:
    entry = DeviceEntry(0.0, 1000.0, 1, 70)
    assert silence_limit_s(entry) == 3 * DEFAULT_INTERVAL_S
    assert not is_stale(entry, 1000.0 + 1800)
    assert is_stale(entry, 1000.0 + 1800.001)
    assert not is_stale(entry, 1000.0 + 1800.001, default_interval_s=601)


def test_the_device_s_own_interval_wins() -> None:
    entry = DeviceEntry(0.0, 1000.0, 1, 70, interval_s=60)
    assert silence_limit_s(entry, 600) == 180
    assert is_stale(entry, 1181.0, default_interval_s=6000)
    assert not is_stale(entry, 1179.0)
