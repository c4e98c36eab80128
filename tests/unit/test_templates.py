"""Stored task templates (recurring schedules, chord callbacks, chain links) keep SPEC §9's options."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from taskstore import NewTask, RecurringTask, State
from taskstore._recurring import from_template, template_fields, to_row
from taskstore.codec import JsonCodec
from taskstore.errors import InvalidTask

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def round_trip(new: NewTask) -> NewTask:
    return from_template(json.dumps(template_fields(new)), args=new.args)


def test_flow_control_options_survive_a_template() -> None:
    new = NewTask(
        "q",
        "k",
        {"a": 1},
        unique_key="u",
        unique_for=30.0,
        unique_states={State.QUEUED},
        concurrency_key="tenant-1",
        expires_at=T0,
    )
    back = round_trip(new)
    assert back.unique_key == "u"
    assert back.unique_for == 30.0
    assert back.unique_hold == frozenset({State.QUEUED})
    assert back.concurrency_key == "tenant-1"
    assert back.expires_at == T0


def test_a_template_without_them_stores_no_new_keys() -> None:
    fields = template_fields(NewTask("q", "k"))
    assert not {"unique_key", "unique_for", "unique_states", "concurrency_key", "expires_at"} & fields.keys()
    assert round_trip(NewTask("q", "k")) == NewTask("q", "k")


def test_a_recurring_template_takes_no_expiry() -> None:
    schedule = RecurringTask("nightly", "@every 60s", NewTask("q", "k", expires_at=T0))
    with pytest.raises(InvalidTask, match="expires_at"):
        to_row(schedule, JsonCodec(), T0)
    keyed = RecurringTask("nightly", "@every 60s", NewTask("q", "k", unique_key="n", concurrency_key="c"))
    stored = to_row(keyed, JsonCodec(), T0)
    assert json.loads(stored.template)["concurrency_key"] == "c"
