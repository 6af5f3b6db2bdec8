"""Times, durations and entry ids on gatewayctl's command line."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_ctl.timespec import entry_id, epoch_ms, parse_duration, parse_time


def test_forms_of_one_moment() -> None:
    assert parse_time("1767225600") == 1_767_225_600
    assert parse_time("1767225600.25") == 1_767_225_600.25
    assert parse_time("2026-01-01T00:00:00Z") == 1_767_225_600
    assert parse_time("2026-01-01T00:00:00") == 1_767_225_600  # naive: UTC
    assert parse_time("2026-01-01T01:00:00+01:00") == 1_767_225_600
    assert parse_time("2026-01-01") == 1_767_225_600


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),  # noqa: DTZ001  (hypothesis wants naive bounds)
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    )
)
def test_iso_round_trip(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    assert parse_time(aware.isoformat()) == aware.timestamp()
    shifted = aware.astimezone(timezone(timedelta(hours=-5)))
    assert parse_time(shifted.isoformat()) == aware.timestamp()


@given(st.text(max_size=30))
def test_anything_else_is_an_argument_error_or_a_time(text: str) -> None:
    try:
        value = parse_time(text)
    except argparse.ArgumentTypeError:
        return
    assert value >= 0


def test_epoch_ms_rounds_down() -> None:
    assert epoch_ms(1.2349) == 1234
    assert epoch_ms(1_767_225_600) == 1_767_225_600_000


@pytest.mark.parametrize("text", ["1-0", "1767225600000-12", "1767225600000"])
def test_entry_ids(text: str) -> None:
    assert entry_id(text) == text


@pytest.mark.parametrize("text", ["", "-", "1-", "a-1", "1-0-0", "+", " 1-0"])
def test_not_entry_ids(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        entry_id(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("0.2", 0.2),
        (".5", 0.5),
        ("45s", 45),
        ("30m", 1800),
        ("2h", 7200),
        ("1.5h", 5400),
        ("1d", 86400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "-1", "h", "1w", "1H", "1h30m", "1e3", " 5", "5 ", "5\n", "inf", "nan", "9" * 400]
)
def test_not_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_duration(text)
