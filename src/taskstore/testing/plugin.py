"""pytest fixtures for testing code that enqueues tasks (loaded by the ``pytest11`` entry point).

    from myproj.tasks import app, send_welcome
    from taskstore.testing import drain

    async def test_signup_sends_a_welcome(taskstore_app, taskstore_clock):
        taskstore_app(app)                          # memory://, on taskstore_clock, for this test only
        await signup("a@b")                         # code under test: send_welcome.enqueue(...)
        assert await drain(app) == 1

    def test_signup_eagerly(taskstore_app):
        taskstore_app(app, eager=True)              # every enqueue runs the task before it returns
        signup_sync("a@b")

``taskstore_app(app, *, url="memory://", clock=<taskstore_clock>, eager=False, eager_propagates=True)``
configures a (module-level) App with ``App.configure`` for the test and, after it, closes the store the
test used and gives the App its own settings back. ``taskstore_clock`` is a ``FakeClock``, the same one
for the whole test. Every fixture's name starts with ``taskstore_``; the plugin adds no hooks and no
options, so it changes nothing in a test suite that does not ask for its fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from taskstore import App
    from taskstore.clock import FakeClock


class ConfigureApp(Protocol):
    """The ``taskstore_app`` fixture: configure an App for this test; it is given back after."""

    def __call__(
        self,
        app: App,
        *,
        url: str = ...,
        clock: Any = ...,
        eager: bool = ...,
        eager_propagates: bool = ...,
        codec: Any = ...,
    ) -> App: ...


@pytest.fixture
def taskstore_clock() -> FakeClock:
    """A ``FakeClock`` (frozen until moved: ``.advance(seconds)``, ``.set(datetime)``) for this test."""
    from taskstore.clock import FakeClock

    return FakeClock()


@pytest.fixture
def taskstore_app(taskstore_clock: FakeClock) -> Iterator[ConfigureApp]:
    """Configure Apps for this test (memory://, ``taskstore_clock``); each is closed and restored after it."""
    from taskstore.client import KEEP

    restore: list[tuple[App, dict[str, Any]]] = []

    def configure(
        app: App,
        *,
        url: str = "memory://",
        clock: Any = taskstore_clock,
        eager: bool = False,
        eager_propagates: bool = True,
        codec: Any = KEEP,
    ) -> App:
        saved = {
            "url": app.url,
            "clock": app.clock,
            "codec": app.codec,
            "eager": app.eager,
            "eager_propagates": app.eager_propagates,
        }
        app.configure(url=url, clock=clock, codec=codec, eager=eager, eager_propagates=eager_propagates)
        restore.append((app, saved))
        return app

    yield configure
    for app, saved in reversed(restore):
        close_for_next_test(app)
        app.configure(**saved)


def close_for_next_test(app: App) -> None:
    """Close the App's store wherever its loop is (a test's loop may be idle, running elsewhere, or gone)."""
    with app._lock:
        store, home = app._store, app._home
    if store is not None and home is not None and not home.is_closed():
        if home.is_running():  # the App's private loop thread, or a server's loop in another thread
            app.close()
        else:  # the test's own loop, not closed yet: nothing else runs on it now
            home.run_until_complete(store.close())
    with app._lock:  # a store whose loop has gone has nothing left to close: drop it
        app._store, app._home = None, None
    app._sync.close()
