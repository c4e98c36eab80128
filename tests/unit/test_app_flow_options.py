"""App-level flow-control options (SPEC §9): what ``new_task`` puts in the NewTask, and bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from taskstore import App, FakeClock, State, errors

CLOCK = FakeClock()


def app() -> App:
    return App("memory://", clock=CLOCK)


def by_tenant(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    return f"tenant:{kwargs['tenant']}" if "tenant" in kwargs else None


def test_key_functions_get_the_calls_args_and_kwargs() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def unique(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        seen.append((args, kwargs))
        return f"report:{args[0]}"

    a = app()

    @a.task(unique_key=unique, unique_for=60, concurrency_key=by_tenant)
    def report(day: str, *, tenant: str) -> None: ...

    new = report.new_task("2026-12-02", tenant="acme")
    assert seen == [(("2026-12-02",), {"tenant": "acme"})]
    assert (new.unique_key, new.unique_for, new.concurrency_key) == ("report:2026-12-02", 60.0, "tenant:acme")
    assert new.unique_states is None  # the store's default: queued, claimed, failed
    assert new.expires_at is None


def test_plain_string_keys_and_states() -> None:
    a = app()

    @a.task(unique_key="nightly", unique_states=["queued", State.CLAIMED], concurrency_key="stripe")
    def nightly() -> None: ...

    new = nightly.new_task()
    assert (new.unique_key, new.concurrency_key) == ("nightly", "stripe")
    assert new.unique_states == frozenset({State.QUEUED, State.CLAIMED})


def test_a_key_function_returning_none_means_no_key() -> None:
    a = app()

    @a.task(unique_key=lambda args, kwargs: None, unique_for=timedelta(minutes=5), concurrency_key=by_tenant)
    def anything(x: int) -> None: ...

    new = anything.new_task(1)
    assert (new.unique_key, new.unique_for, new.unique_states, new.concurrency_key) == (None, None, None, None)


def test_options_override_the_tasks_own_and_set_expiry_from_now() -> None:
    a = app()

    @a.task(unique_key="default", concurrency_key="shared", expires=3600)
    def job(x: int) -> None: ...

    plain = job.new_task(1)
    assert plain.expires_at == CLOCK.now() + timedelta(hours=1)
    per_call = job.options(
        unique_key=lambda args, kwargs: f"job:{args[0]}",
        unique_for=timedelta(seconds=30),
        concurrency_key="tenant:7",
        expires=timedelta(seconds=90),
    ).new_task(5)
    assert (per_call.unique_key, per_call.unique_for, per_call.concurrency_key) == ("job:5", 30.0, "tenant:7")
    assert per_call.expires_at == CLOCK.now() + timedelta(seconds=90)
    CLOCK.advance(10)
    assert job.options(expires=5).new_task(1).expires_at == CLOCK.now() + timedelta(seconds=5)


def test_signatures_carry_the_options_into_groups() -> None:
    a = app()

    @a.task(concurrency_key=lambda args, kwargs: f"user:{args[0]}")
    def member(user: int) -> None: ...

    assert member.s(9).new_task().concurrency_key == "user:9"


@pytest.mark.parametrize(
    ("function", "says"),
    [
        (lambda args, kwargs: args[3], "unique_key function raised IndexError"),
        (lambda args, kwargs: 42, "must return a str or None, got 42"),
        (lambda args, kwargs: b"bytes", "must return a str or None"),
        (lambda args, kwargs: "", "unique_key must be a non-empty string"),
        (lambda args, kwargs: "a\x00b", "NUL"),
    ],
)
def test_a_key_function_that_fails_or_returns_a_non_string_is_invalid_at_enqueue(function: Any, says: str) -> None:
    a = app()

    @a.task(unique_key=function)
    def job(x: int) -> None: ...

    with pytest.raises(errors.InvalidTask, match=says):
        job.new_task(1)
    with pytest.raises(errors.InvalidTask, match=says.replace("unique_key", "concurrency_key")):
        job.options(unique_key="fine", concurrency_key=function).new_task(1)


@pytest.mark.asyncio
async def test_enqueue_refuses_a_failing_key_function_and_stores_nothing() -> None:
    a = app()

    @a.task(concurrency_key=lambda args, kwargs: kwargs["tenant"])
    async def job() -> None: ...

    with pytest.raises(errors.InvalidTask, match="concurrency_key function raised KeyError"):
        await job.enqueue()
    assert await (await a.store()).count() == 0
    await a.aclose()


@pytest.mark.parametrize(
    "options",
    [
        {"unique_key": ""},
        {"unique_key": 5},
        {"concurrency_key": "x" * 300},
        {"unique_key": "k", "unique_for": -1},
        {"unique_key": "k", "unique_for": 0},
        {"unique_key": "k", "unique_for": float("nan")},
        {"unique_key": "k", "unique_states": ["claimed"]},
        {"unique_key": "k", "unique_states": ["nope", "queued"]},
        {"unique_for": 30},
        {"expires": 0},
        {"expires": -5},
        {"expires": float("inf")},
        {"expires": 1e12},
    ],
)
def test_bad_options_are_invalid_where_they_are_given(options: dict[str, Any]) -> None:
    a = app()
    with pytest.raises(errors.InvalidTask):
        a.task(**options)(lambda: None)

    @a.task
    def job() -> None: ...

    with pytest.raises(errors.InvalidTask):
        job.options(**options).new_task()


@pytest.mark.asyncio
async def test_enqueue_with_a_unique_key_function_returns_the_live_task_on_memory() -> None:
    a = App("memory://", clock=FakeClock())

    @a.task(unique_key=lambda args, kwargs: f"report:{args[0]}")
    async def report(day: str) -> None: ...

    try:
        first = await report.enqueue("2026-12-02")
        again = await report.enqueue("2026-12-02")
        other = await report.enqueue("2026-12-03")
        assert again.id == first.id
        assert other.id != first.id
        assert (await (await a.store()).get(first.id)).unique_key == "report:2026-12-02"
        assert await (await a.store()).count() == 2
    finally:
        await a.aclose()
