"""App.configure and the testing helpers' sync forms (memory backend only; the async ones run on every
backend in tests/worker/test_testing_helpers.py)."""

from __future__ import annotations

import pytest

from taskstore import App, FakeClock, errors
from taskstore.testing import drain_sync, run_until_complete_sync


def test_configure_checks_its_values() -> None:
    app = App("memory://")
    with pytest.raises(errors.ConfigError):
        app.configure(clock="now")  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigError):
        app.configure(eager="yes")  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigError):
        app.configure(url=3)  # type: ignore[arg-type]
    assert app.configure(url="memory://", clock=None) is app


def test_drain_and_eager_from_sync_code() -> None:
    app = App("memory://", clock=FakeClock())

    @app.task
    def shout(word: str) -> str:
        return word.upper()

    try:
        handle = shout.enqueue_sync("hi")
        assert drain_sync(app) == 1
        assert handle.result_sync(timeout=0) == "HI"
        app.close()
        app.configure(eager=True)
        assert shout.enqueue_sync("now").result_sync(timeout=0) == "NOW"
    finally:
        app.close()


def test_run_until_complete_from_sync_code() -> None:
    clock = FakeClock()
    app = App("memory://", clock=clock)

    @app.task
    def later(x: int) -> int:
        return x + 1

    try:
        handle = later.options(delay=90).enqueue_sync(1)
        assert run_until_complete_sync(app, handle) == 2
        assert (clock.now() - FakeClock().now()).total_seconds() == 90
    finally:
        app.close()


def test_eager_sync_handlers_enqueue_eagerly_too() -> None:
    app = App("memory://", eager=True)
    log: list[str] = []

    @app.task
    def child(word: str) -> None:
        log.append(word)

    @app.task
    def parent(word: str) -> str:
        child.enqueue_sync(word + "!")  # from the handler's thread, back through the App's loop
        log.append(word)
        return word

    try:
        assert parent.enqueue_sync("hi").result_sync(timeout=0) == "hi"
        assert log == ["hi!", "hi"]  # the child ran inside the parent's enqueue, before it went on
    finally:
        app.close()
