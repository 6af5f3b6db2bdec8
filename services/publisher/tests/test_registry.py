from __future__ import annotations

from gateway_common.entries import Addressing, Record
from gateway_publisher.registry import DeviceEntry, DeviceRegistry


def rec(device: str, at: float, lb: int = 70) -> Record:
    return Record(device, "button", {"buttons_state": 1}, lb, 60, at, "1-0")


def test_entry_round_trips_through_bytes() -> None:
    entry = DeviceEntry(1.5, 2.5, 3, 71)
    assert DeviceEntry.from_bytes(entry.to_bytes()) == entry


def test_updated_does_not_change_until_commit() -> None:
    registry = DeviceRegistry()
    changed = registry.updated([rec("A", 10.0), rec("A", 12.0, lb=80), rec("B", 11.0)])
    assert registry.get("A") is None
    assert changed["A"] == DeviceEntry(10.0, 12.0, 2, 80)
    assert changed["B"] == DeviceEntry(11.0, 11.0, 1, 70)
    registry.commit(changed)
    assert registry.get("A") == DeviceEntry(10.0, 12.0, 2, 80)
    # an older record (acknowledged late) does not overwrite the latest link budget
    assert registry.updated([rec("A", 9.0, lb=1)])["A"] == DeviceEntry(9.0, 12.0, 3, 80)


def test_unreadable_entries_are_reported_not_fatal() -> None:
    registry = DeviceRegistry()
    bad = registry.load(
        {"A": DeviceEntry(1.0, 1.0, 1, 1).to_bytes(), "B": b"\xc1garbage", "C": b"\x90"}
    )
    assert registry.get("A") is not None
    assert sorted(bad) == ["B", "C"]


def test_births_belong_to_one_connection() -> None:
    registry = DeviceRegistry()
    assert registry.needs_birth("A")
    registry.mark_born("A")
    assert not registry.needs_birth("A")
    registry.forget_birth("A")
    assert registry.needs_birth("A")
    registry.mark_born("A")
    registry.new_connection()
    assert registry.needs_birth("A")


def test_the_downlink_facts_follow_the_newest_records() -> None:
    registry = DeviceRegistry()
    config = Record("A", "energy_config", {"interval_s": 300, "enabled": False}, 70, 60, 5.0, "1-0")
    addressed = Record(
        "A", "button", {"buttons_state": 1}, 70, 60, 6.0, "2-0", Addressing(2, 0x01, 1)
    )
    registry.commit(registry.updated([config, addressed]))
    entry = registry.get("A")
    assert entry is not None
    assert (entry.interval_s, entry.enabled, entry.addressing) == (300.0, False, (2, 1, 1))
    assert DeviceEntry.from_bytes(entry.to_bytes()) == entry
    # a record without addressing (written before the downlink) keeps what is known
    registry.commit(registry.updated([rec("A", 7.0)]))
    entry = registry.get("A")
    assert entry is not None
    assert entry.addressing == (2, 1, 1)
