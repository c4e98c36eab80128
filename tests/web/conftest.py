"""Fixtures for the HTTP API's tests: the app over each backend, driven through Starlette's TestClient.

The client is always used as a context manager: its portal (one event loop in a thread) then lives for the
whole test, so the store the app opens lazily on its first request stays on one loop (a PostgreSQL pool is
bound to the loop that opened it). ``Api.run`` calls the store directly on that same loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from taskstore.clock import FakeClock
from taskstore.store import Store
from taskstore.web import create_app
from taskstore.web.routes import Endpoint

T = TypeVar("T")

ADMIN = "admin:admin-secret-1"
WORKER = "worker:worker-secret-1"
READ = "read:read-secret-1"
TOKENS = (ADMIN, WORKER, READ)


# Lines for the end of the run's report (the Schemathesis figures), shown without -s.
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)


def plain(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints that answer and end: an event stream (``/events``) is left to its own tests."""
    return [e for e in endpoints if e.media_type != "text/event-stream" and not e.path.endswith("/events")]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.partition(':')[2]}"}


class Api:
    """A TestClient over one app, with the store it opened and the fake clock it reads."""

    def __init__(self, client: TestClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    def store(self) -> Store:
        state = self.client.app.state.taskstore  # type: ignore[attr-defined]
        store: Store = self.run(state.store)
        return store

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` on the app's own event loop."""
        portal = self.client.portal
        assert portal is not None, "use the client as a context manager"

        async def call() -> T:
            return await fn(*args, **kwargs)

        return portal.call(call)

    def create(self, queue: str = "q", kind: str = "k", **fields: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/tasks", json={"queue": queue, "kind": kind, **fields})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def claim(self, worker: str = "w1", **fields: Any) -> list[dict[str, Any]]:
        response = self.client.post("/api/v1/claims", json={"worker_id": worker, **fields})
        assert response.status_code == 200, response.text
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        return tasks


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store: memory, a SQLite file, or a schema of its own on the tests' PostgreSQL."""
    if request.param == "postgres":
        from ..postgres_server import new_schema, with_schema

        return with_schema(request.getfixturevalue("postgres_db"), new_schema())
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return "memory://"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def open_api(url: str, tokens: tuple[str, ...] = (), **kwargs: Any) -> Iterator[Api]:
    clock = FakeClock()
    app = create_app(url, tokens=tokens, store_options={"clock": clock}, **kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, clock)


@pytest.fixture
def api(url: str) -> Iterator[Api]:
    """The app with no token (loopback: the TestClient is an admin) over each backend."""
    yield from open_api(url)


@pytest.fixture
def sqlite_api(sqlite_url: str) -> Iterator[Api]:
    """The app over a SQLite file only: for what does not depend on the backend."""
    yield from open_api(sqlite_url)


@pytest.fixture
def secured(sqlite_url: str) -> Iterator[Api]:
    """The app with a token of each role, over SQLite."""
    yield from open_api(sqlite_url, TOKENS)
