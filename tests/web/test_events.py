"""``GET /api/v1/events`` over a real uvicorn server on a loopback port: statuses, queue snapshots, lifecycle.

The server runs on the test's own event loop, so the test can look inside it: after a client leaves, no
task of the stream may still run and no wake-up subscription may be left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

import taskstore
from taskstore import NewTask, Store, serve
from taskstore._feed import FEED
from taskstore._wakeup import HUB
from taskstore.web import create_app, events

from ..postgres_server import new_schema, with_schema

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # generous bound on any one awaited event: a failure, never a latency assertion


@pytest.fixture(autouse=True)
def wake_ups_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Push the streams' safety re-reads out of reach: what these tests see, wake-ups delivered."""
    monkeypatch.setattr(events, "WATCH_POLL", 3600.0)
    monkeypatch.setattr(events, "QUEUES_POLL", 3600.0)


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


class EventReader:
    """A minimal SSE parser: ``event``/``id``/``data`` fields, blank line ends an event, comments kept apart."""

    def __init__(self, response: httpx2.Response) -> None:
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self) -> Event | None:
        """The next event, or None once the server ended the stream."""
        return await asyncio.wait_for(self._next(), WAIT)

    async def _next(self) -> Event | None:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                if fields:
                    return Event(fields.get("event", "message"), fields.get("id"), json.loads(fields["data"]))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        return None

    async def rest(self) -> list[Event]:
        out = []
        while (event := await self.next()) is not None:
            out.append(event)
        return out


@contextlib.asynccontextmanager
async def serving(store: Store) -> AsyncIterator[httpx2.AsyncClient]:
    async with running(store) as (client, _):
        yield client


@contextlib.asynccontextmanager
async def running(store: Store) -> AsyncIterator[tuple[httpx2.AsyncClient, uvicorn.Server]]:
    """The app on a free loopback port of this event loop, and a client for it; both stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = serve.server(create_app(store, tokens=[]), log_level="warning", lifespan="off")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            yield client, server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return with_schema(request.getfixturevalue("postgres_db"), new_schema())


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store another process can open too."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return with_schema(request.getfixturevalue("postgres_db"), new_schema())


@contextlib.asynccontextmanager
async def stream(client: httpx2.AsyncClient, **params: Any) -> AsyncIterator[EventReader]:
    async with client.stream("GET", "/api/v1/events", params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventReader(response)


def states(found: list[Event]) -> list[str]:
    return [e.data["state"] for e in found if e.event == "status"]


@pytest.mark.asyncio
async def test_a_task_stream_shows_queued_running_succeeded_in_order_and_ends(url: str) -> None:
    async with taskstore.open(url) as store, serving(store) as client:
        task = await store.create(NewTask("mail", "send"))
        async with stream(client, id=task.id, timeout=WAIT) as reader:
            first = await reader.next()
            assert first is not None
            assert first.event == "status"
            assert first.data["id"] == task.id
            assert first.data["state"] == "queued"
            [claimed] = await store.claim("w1", ["mail"])
            running = await reader.next()
            assert running is not None
            assert running.data["state"] == "running"
            await store.mark_done(claimed, {"sent": True})
            rest = await reader.rest()
        assert states(rest) == ["succeeded"]
        assert rest[0].data["payload"] == {"sent": True}
        assert rest[-1].event == "end"
        assert rest[-1].id == "end"
        ids = [first.id, running.id, rest[0].id]
        assert ids == ["1", "2", "3"]


@pytest.mark.asyncio
async def test_several_ids_merge_and_the_stream_ends_when_all_are_terminal() -> None:
    async with taskstore.open("memory://") as store, serving(store) as client:
        a = await store.create(NewTask("q", "k"))
        b = await store.create(NewTask("q", "k"))
        async with stream(client, id=[a.id, b.id, a.id], timeout=WAIT) as reader:
            initial = [await reader.next(), await reader.next()]
            assert sorted(e.data["id"] for e in initial if e is not None) == sorted([a.id, b.id])
            await store.cancel(a.id)
            cancelled = await reader.next()
            assert cancelled is not None
            assert (cancelled.data["id"], cancelled.data["state"]) == (a.id, "cancelled")
            await store.cancel(b.id)
            rest = await reader.rest()
        assert [(e.event, e.data.get("id"), e.data.get("state")) for e in rest] == [
            ("status", b.id, "cancelled"),
            ("end", None, None),
        ]


def _in_another_process(url: str, queue: str, action: str) -> subprocess.Popen[bytes]:
    """``create`` a task in ``queue``, or ``finish`` one: claim it, then mark it done."""
    code = textwrap.dedent(
        f"""
        import asyncio, taskstore

        async def main():
            async with taskstore.open({url!r}) as store:
                if {action!r} == "create":
                    await store.create(taskstore.NewTask({queue!r}, "k"))
                    return
                [task] = await store.claim("other-process", [{queue!r}], block_for=20)
                await asyncio.sleep(0.2)
                await store.mark_done(task, "from elsewhere")

        asyncio.run(main())
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_change_made_by_another_process_reaches_the_stream(shared_url: str) -> None:
    async with taskstore.open(shared_url) as store, serving(store) as client:
        task = await store.create(NewTask("elsewhere", "k"))
        async with stream(client, id=task.id, timeout=WAIT) as reader:
            first = await reader.next()
            assert first is not None
            assert first.data["state"] == "queued"
            proc = _in_another_process(shared_url, "elsewhere", "finish")
            try:
                rest = await reader.rest()
            finally:
                assert proc.wait(WAIT) == 0
        # "running" may merge away (another process's quick changes arrive as wake-ups, not one by one);
        # the terminal status and the end arrive, before the stream's generous timeout.
        assert states(rest)[-1] == "succeeded"
        assert rest[-2].data["payload"] == "from elsewhere"
        assert rest[-1].event == "end"


@pytest.mark.asyncio
async def test_queue_snapshots_follow_changes(url: str) -> None:
    async with (
        taskstore.open(url) as store,
        serving(store) as client,
        stream(client, interval=0.1, timeout=WAIT) as reader,
    ):
        first = await reader.next()
        assert first is not None
        assert first.event == "queues"
        assert first.data == {"queues": []}
        await store.create(NewTask("snap", "k"))
        queued = await reader.next()
        assert queued is not None
        assert queued.event == "queues"
        [snap] = queued.data["queues"]
        assert snap["name"] == "snap"
        assert snap["counts"]["queued"] == 1
        await store.claim("w1", ["snap"])
        running = await reader.next()
        assert running is not None
        assert running.data["queues"][0]["counts"]["queued"] == 0
        assert running.data["queues"][0]["counts"]["claimed"] == 1


@pytest.mark.slow
@pytest.mark.asyncio
async def test_queue_snapshots_follow_another_process(shared_url: str) -> None:
    async with (
        taskstore.open(shared_url) as store,
        serving(store) as client,
        stream(client, interval=0.1, timeout=WAIT) as reader,
    ):
        first = await reader.next()
        assert first is not None
        assert first.data == {"queues": []}
        for action, state in (("create", "queued"), ("finish", "done")):
            proc = _in_another_process(shared_url, "far", action)
            try:
                while True:
                    event = await reader.next()
                    assert event is not None, f"the stream ended before the other process's {action} arrived"
                    if event.data["queues"] and event.data["queues"][0]["counts"][state] == 1:
                        break
            finally:
                assert proc.wait(WAIT) == 0


def _leftovers(key: Any) -> list[str]:
    """What a stream leaves behind on this loop: its tasks, and its subscriptions to wake-ups."""
    names = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("taskstore-events")]
    if FEED.active:
        names.append("a status feed subscription")
    if HUB._waiters.get(("status", key)) or HUB._waiters.get(key):
        names.append("a wake-up subscription")
    return names


@pytest.mark.asyncio
async def test_a_disconnected_client_leaves_nothing_running() -> None:
    async with taskstore.open("memory://") as store, serving(store) as client:
        key = (await store._ready()).wake_key
        task = await store.create(NewTask("q", "k"))
        async with stream(client, id=task.id) as by_id, stream(client) as by_queue:
            assert await by_id.next() is not None
            assert await by_queue.next() is not None
            assert _leftovers(key)  # the streams are live: the check below can see them
        for _ in range(300):  # bounded: well under the 15 s ping that would otherwise reveal the departure
            if not _leftovers(key):
                break
            await asyncio.sleep(0.01)
        assert _leftovers(key) == []


@pytest.mark.asyncio
async def test_timeout_ends_the_stream_and_pings_keep_it_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "PING_EVERY", 0.05)
    async with taskstore.open("memory://") as store, serving(store) as client:
        async with stream(client, timeout=0.5) as reader:
            found = await reader.rest()
        assert [e.event for e in found] == ["queues"]  # nothing changed: one snapshot, none repeated
        assert ": ping" in reader.comments


@pytest.mark.asyncio
async def test_a_store_failure_mid_stream_is_an_error_event_that_ends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    async with taskstore.open("memory://") as store, serving(store) as client:
        async with stream(client, interval=0.1, timeout=WAIT) as reader:
            assert await reader.next() is not None

            async def down() -> None:
                raise taskstore.errors.BackendUnavailable("the database went away")

            monkeypatch.setattr(store, "list_queues", down)
            await store.create(NewTask("q", "k"))
            found = await reader.rest()
        assert [e.event for e in found] == ["error"]
        assert found[0].data["type"] == "BackendUnavailable"
        assert found[0].data["status"] == 503


@pytest.mark.asyncio
async def test_a_reconnect_after_the_end_is_told_to_stop() -> None:
    async with taskstore.open("memory://") as store, serving(store) as client:
        response = await client.get("/api/v1/events", params={"id": "x"}, headers={"Last-Event-ID": "end"})
        assert response.status_code == 204


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"interval": "0"}, "interval"),
        ({"interval": "61"}, "interval"),
        ({"interval": "soon"}, "interval"),
        ({"timeout": "-1"}, "timeout"),
        ({"timeout": "0"}, "timeout"),
        ({"id": ""}, "id[0]"),
        ({"id": [f"t{i}" for i in range(101)]}, "id"),
        ({"ids": "x"}, "ids"),
    ],
)
@pytest.mark.asyncio
async def test_bad_parameters_are_422_problems(params: dict[str, Any], field: str) -> None:
    async with taskstore.open("memory://") as store, serving(store) as client:
        response = await client.get("/api/v1/events", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


@pytest.mark.asyncio
async def test_the_openapi_document_describes_the_stream() -> None:
    async with taskstore.open("memory://") as store, serving(store) as client:
        doc = (await client.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/v1/events"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {p["name"] for p in op["parameters"]} == {"id", "interval", "timeout"}
    assert op["x-taskstore-role"] == "read"


def test_frames_are_single_line_json() -> None:
    framed = events.frame("status", b'{"a":"x\\ny"}', "7")
    assert framed == b'event: status\nid: 7\ndata: {"a":"x\\ny"}\n\n'


@pytest.mark.asyncio
async def test_open_streams_end_when_the_server_shuts_down() -> None:
    async with taskstore.open("memory://") as store, running(store) as (client, server):
        task = await store.create(NewTask("q", "k"))
        async with stream(client, id=task.id) as by_id, stream(client) as by_queue:
            assert await by_id.next() is not None
            assert await by_queue.next() is not None
            server.should_exit = True  # uvicorn would wait for both responses, without limit
            assert await by_id.rest() == []
            assert await by_queue.rest() == []
