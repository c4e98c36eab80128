"""Recurring schedules: which slot is due and which comes next (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskstore import errors
from taskstore.schedule import parse_schedule, slot_task_id

T = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_every_slots_are_multiples_of_the_interval_since_the_epoch() -> None:
    every = parse_schedule("@every 30s")
    assert every.latest_slot(T) == T
    assert every.latest_slot(T + timedelta(seconds=29.9)) == T
    assert every.latest_slot(T + timedelta(seconds=30)) == T + timedelta(seconds=30)
    assert every.next_slot(T) == T + timedelta(seconds=30)
    assert every.next_slot(T + timedelta(seconds=1)) == T + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("@every 250ms", 0.25), ("@every 5m", 300), ("@every 2h", 7200), ("@every 1d", 86400), ("@every  45", 45)],
)
def test_every_units(text: str, seconds: float) -> None:
    assert parse_schedule(text).every == seconds


def test_cron_slots() -> None:
    cron = parse_schedule("*/15 * * * *")
    assert cron.latest_slot(T) == T  # a slot exactly now is due now
    assert cron.latest_slot(T + timedelta(minutes=14, seconds=59)) == T
    assert cron.next_slot(T) == T + timedelta(minutes=15)
    daily = parse_schedule("@daily")
    assert daily.next_slot(T) == datetime(2030, 1, 2, tzinfo=UTC)


def test_six_field_cron_has_seconds() -> None:
    every_ten = parse_schedule("* * * * * */10")  # croniter reads seconds as the sixth field
    assert every_ten.next_slot(T) - T == timedelta(seconds=10)


@pytest.mark.parametrize("text", ["", "  ", "@every", "@every 0s", "@every 1y", "* * *", "not cron", "60 * * * *"])
def test_bad_schedules(text: str) -> None:
    with pytest.raises(errors.InvalidTask):
        parse_schedule(text)


def test_slot_task_ids_are_the_same_everywhere() -> None:
    assert slot_task_id("nightly", T) == "nightly@2030-01-01T12:00:00.000000Z"
    assert slot_task_id("nightly", T.astimezone()) == slot_task_id("nightly", T)
