"""``transitions.create_all``, bulk enqueue's loop, makes exactly the tasks ``transitions.create`` makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskstore import NewTask, State, transitions
from taskstore.retry import Exponential

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

NEWS = [
    NewTask("q", "k", {"n": 1}),
    NewTask("q", "k"),
    NewTask(
        "other",
        "kind.x",
        [1, 2],
        id="given",
        priority=-3,
        run_at=NOW + timedelta(minutes=5),
        max_attempts=7,
        processing_timeout=timedelta(seconds=90),
        retry=Exponential(base=2.0),
        context={"traceparent": "t", "who": "me"},
        reference_id="ref",
        recurring_id="rec",
        group_id="grp",
        unique_key="key",
        unique_for=30,
        unique_states={"queued", "claimed"},
        concurrency_key="tenant",
        expires_at=NOW + timedelta(hours=1),
    ),
    NewTask("q", "k", unique_key="plain-key"),
    NewTask("q", "k", processing_timeout=2.5, unique_key="k2", unique_for=timedelta(seconds=3)),
]


def test_each_task_is_the_one_create_makes() -> None:
    ids = [f"id-{i}" for i in range(len(NEWS))]
    seqs = [10 + i for i in range(len(NEWS))]
    made = transitions.create_all(NEWS, ids, seqs, NOW)
    for new, task_id, seq, task in zip(NEWS, ids, seqs, made, strict=True):
        alone = transitions.create(new, task_id=task_id, now=NOW, args=new.args, seq=seq)
        assert task == alone
        assert task.__dict__ == alone.__dict__  # every field, failures and seq included (not all compare)
        assert task.args is new.args  # the store tells inserted tasks by the row's own args object
        assert task.state is State.QUEUED


def test_no_two_tasks_share_their_fields_or_context() -> None:
    made = transitions.create_all([NEWS[2], NEWS[2]], ["a", "b"], [1, 2], NOW)
    assert made[0].__dict__ is not made[1].__dict__
    assert made[0].context is not NEWS[2].context  # a copy: the caller's mapping may change later
    assert made[0].context is not made[1].context
    assert made[0].replace(priority=5).priority == 5
    assert made[1].priority == -3


def test_nothing_to_create() -> None:
    assert transitions.create_all([], [], [], NOW) == []
