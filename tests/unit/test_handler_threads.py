"""The threads that run sync handlers: they grow past stuck calls, keep a few idle, and end on close."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from taskstore._threads import HandlerThreads, outcome_of

pytestmark = pytest.mark.asyncio


def named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


async def eventually(check: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_calls_past_the_kept_count_get_threads_and_the_surplus_ends() -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    pool = HandlerThreads(keep=2, name=prefix)
    release = threading.Event()
    futures = [pool.run(lambda i=i: release.wait(10) and i) for i in range(5)]
    await eventually(lambda: len(named(prefix)) == 5, "a thread for every call")
    assert all(t.daemon for t in named(prefix))  # none may hold the interpreter's exit
    release.set()
    assert [await outcome_of(f) for f in futures] == [0, 1, 2, 3, 4]
    await eventually(lambda: len(named(prefix)) == 2, "only the kept idle threads")
    pool.close()
    await eventually(lambda: not named(prefix), "every thread to end on close")


async def test_any_exception_comes_back_as_raised_and_the_thread_lives_on() -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    pool = HandlerThreads(keep=1, name=prefix)

    def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        await outcome_of(pool.run(leave))
    # An asyncio future cannot hold a StopIteration; carried as a value it comes back as any coroutine
    # raising it does.
    with pytest.raises(RuntimeError) as caught:
        await outcome_of(pool.run(lambda: next(iter(()))))
    assert isinstance(caught.value.__cause__, StopIteration)
    assert await outcome_of(pool.run(lambda: "again")) == "again"
    await eventually(lambda: len(named(prefix)) == 1, "one kept thread")
    pool.close()


async def test_an_abandoned_call_is_discarded_and_its_thread_is_reused() -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    pool = HandlerThreads(keep=1, name=prefix)
    release, finished = threading.Event(), threading.Event()

    def stuck() -> str:
        release.wait(10)
        finished.set()
        return "late"

    abandoned = pool.run(stuck)
    abandoned.cancel()
    release.set()
    assert await asyncio.to_thread(finished.wait, 10)
    assert await outcome_of(pool.run(lambda: "next")) == "next"
    assert abandoned.cancelled()
    await eventually(lambda: len(named(prefix)) == 1, "one kept thread")
    pool.close()
