"""The wording of ``store.why``: each gate gives one reason that names its facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskstore import Limit, NewTask, WorkerHeartbeat, transitions
from taskstore._why import Facts, reasons
from taskstore.gates import new_gate
from taskstore.model import Failure, Task

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LIVE = [WorkerHeartbeat("w1", queues=("mail",))]


def task(**options: object) -> Task:
    return transitions.create(NewTask("mail", "send", **options), task_id="t1", now=T0)  # type: ignore[arg-type]


def facts(t: Task, **overrides: object) -> Facts:
    values: dict[str, object] = {
        "task": t,
        "now": T0,
        "paused": False,
        "gate": None,
        "holders": (),
        "workers": LIVE,
        "worker_window": 60.0,
    }
    values.update(overrides)
    return Facts(**values)  # type: ignore[arg-type]


def test_a_claimable_task_with_a_live_worker_has_no_reason() -> None:
    assert reasons(facts(task())) == []


def test_a_worker_on_every_queue_counts() -> None:
    assert reasons(facts(task(), workers=[WorkerHeartbeat("w", queues=())])) == []


def test_each_gate_gives_its_reason() -> None:
    t = task(run_at=T0 + timedelta(minutes=5), concurrency_key="tenant-1")
    holder = transitions.claim(
        transitions.create(NewTask("mail", "send", concurrency_key="tenant-1"), task_id="h1", now=T0),
        worker_id="w9",
        token="tok",
        now=T0,
    )
    gate = new_gate(Limit("tenant-1", concurrency=1), T0, running=1)
    found = reasons(facts(t, paused=True, gate=gate, holders=[holder], workers=[]))
    text = "\n".join(found)
    assert len(found) == 4, found
    assert "scheduled" in text
    assert "in 5.0 min" in text
    assert "'mail' is paused" in text
    assert "'tenant-1'" in text
    assert "1 of 1" in text
    assert "h1" in text
    assert "'w9'" in text
    assert "no live worker" in text


def test_a_rate_limit_says_when_the_bucket_refills() -> None:
    gate = new_gate(Limit("k", rate=2, per=10.0), T0)
    gate.take(T0)
    gate.take(T0)
    (reason,) = reasons(facts(task(concurrency_key="k"), gate=gate))
    assert "rate limit (2 per 10 s)" in reason
    assert (T0 + timedelta(seconds=5)).isoformat() in reason


def test_expired_and_retry_waits() -> None:
    t = task(expires_at=T0 + timedelta(seconds=1))
    (reason,) = reasons(facts(t, now=T0 + timedelta(seconds=2)))
    assert "expired" in reason
    claimed = transitions.claim(task(), worker_id="w", token="x", now=T0)
    assert claimed.claim is not None
    failed = transitions.mark_failed(claimed, claimed.claim, now=T0, failure=Failure("Boom"))
    (reason,) = reasons(facts(failed))
    assert "retry" in reason


def test_running_and_finished_tasks_say_what_they_are() -> None:
    claimed = transitions.claim(task(), worker_id="w7", token="x", now=T0)
    (reason,) = reasons(facts(claimed))
    assert "'w7'" in reason
    assert "running" in reason
    assert claimed.claim is not None
    done = transitions.mark_done(claimed, claimed.claim, now=T0)
    assert "done" in reasons(facts(done))[0]
    expired = transitions.expire(task(expires_at=T0 + timedelta(seconds=1)), now=T0 + timedelta(seconds=1))
    assert expired is not None
    assert "expired" in reasons(facts(expired))[0]


def test_a_limit_of_zero_says_so() -> None:
    gate = new_gate(Limit("k", concurrency=0), T0)
    (reason,) = reasons(facts(task(concurrency_key="k"), gate=gate))
    assert "limit of 0" in reason
