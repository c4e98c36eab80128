"""``GET /api/v1/events``: server-sent events of status changes (SPEC §10), fed by the store's wake-ups.

Two streams, chosen by the query:

- ``?id=A&id=B`` (up to 100 ids): an event ``status`` (``StatusOut``) with each id's current status, then one
  per change, from ``Store.watch`` merged across the ids; once every id reached a terminal status, an event
  ``end`` (id ``end``) and the stream ends. An id with no status yet is waited for (a status record may be
  written after the client subscribed).
- no id: an event ``queues`` (``QueuesOut``, what ``GET /queues`` answers) at connect and after the store
  changed, at most one per ``interval`` seconds, and only when the snapshot differs from the last one sent.

Nothing here polls in a tight loop. Watchers sleep on this process's wake-up hub (``_wakeup.HUB``), which
every write made through a store of this process wakes, and which the backends wake for other processes'
writes (PostgreSQL ``LISTEN``/``NOTIFY``, SQLite's watch of the ``-shm`` header, in-process on
``memory://``). A slow re-read (``WATCH_POLL``, ``QUEUES_POLL``) covers what sends no wake-up: on PostgreSQL
a claim made by another process notifies nobody, so its ``running`` shows at that pace (or is merged away).

A plain ``Response`` subclass rather than ``sse-starlette``: the wire format is a few lines, and this class
needs exactly four concurrent jobs ended together: the events, a ``: ping`` comment every ``PING_EVERY``
seconds, a listener for the client's disconnect and one for the server's shutdown. A dependency for that is
not worth it. Listening for the disconnect matters: Starlette's ``StreamingResponse`` (ASGI spec 2.4
servers) learns of a departed client only at its next write, which for an idle stream is the next ping.

``Last-Event-ID``: statuses are states, not a log the store keeps, so there is nothing to replay; a
reconnecting client gets every id's current status again, which supersedes whatever it missed. Event ids
number a stream's events; the last one of a finished stream is ``end``, and a reconnect carrying
``Last-Event-ID: end`` is answered ``204 No Content``, which tells a browser's ``EventSource`` to stop
reconnecting to a stream that has nothing more to say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .._wakeup import HUB
from ..model import TaskStatus
from . import convert
from .auth import Role
from .problems import problem_of
from .routes import Call, Endpoint
from .schemas import JSON_ENCODER, EventsQuery, QueuesOut

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..store import Store
    from .app import WebState

log = logging.getLogger("taskstore.web")

PING_EVERY = 15.0  # a comment line this often keeps proxies from closing an idle stream
WATCH_POLL = 1.0  # an id's safety re-read when no wake-up came (PostgreSQL claims send none)
QUEUES_POLL = 5.0  # the queue snapshot's safety re-read (also what moves the live-worker counts)
END_ID = "end"
_CLOSING = "events.closing"  # the key of the app's "streams must end" event in WebState.extras

EVENT_STREAM = "text/event-stream"


def closing(state: WebState) -> asyncio.Event:
    """Set when the server shuts down: every open stream of the app ends."""
    event = state.extras.get(_CLOSING)
    if event is None:
        event = state.extras[_CLOSING] = asyncio.Event()
    assert isinstance(event, asyncio.Event)
    return event


def end_streams(app: Starlette) -> None:
    """End every open event stream of ``app`` (``create_app``'s), on the server's loop.

    A server shutting down waits for open responses to finish (uvicorn does, without limit by default), and
    an event stream never finishes by itself: call this first. ``taskstore serve`` does (``serve.server``).
    """
    closing(app.state.taskstore).set()


def frame(event: str, data: bytes, event_id: str) -> bytes:
    """One event. ``data`` is compact JSON, which escapes CR and LF, so it is always a single line."""
    return b"event: %b\nid: %b\ndata: %b\n\n" % (event.encode(), event_id.encode(), data)


class EventStream(Response):
    """A ``text/event-stream`` response: the events, pings, and a listener that ends it all on disconnect."""

    media_type = EVENT_STREAM

    def __init__(self, events: AsyncGenerator[bytes, None], *, timeout: float | None, closing: asyncio.Event) -> None:
        self._events = events
        self._timeout = timeout
        self._closing = closing
        self.status_code = 200
        self.background = None
        # no-cache: an intermediary must not replay a stream; X-Accel-Buffering: nginx must not hold it back.
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lock = asyncio.Lock()
        gone = asyncio.Event()

        async def emit(chunk: bytes) -> None:
            async with lock:  # the pinger and the producer must not interleave their writes
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except OSError:  # ASGI 2.4: a write to a departed client raises
                    gone.set()
                    raise

        async def produce() -> None:
            async with contextlib.aclosing(self._events) as events:
                try:
                    async for chunk in events:
                        await emit(chunk)
                except Exception as exc:
                    if gone.is_set():  # the client left mid-write: nobody to tell
                        return
                    # Headers are sent: the failure can only be told as an event, and it ends the stream.
                    with contextlib.suppress(OSError):
                        await emit(frame("error", JSON_ENCODER.encode(problem_of(exc)), "error"))

        async def ping() -> None:
            while True:
                await asyncio.sleep(PING_EVERY)
                await emit(b": ping\n\n")

        async def listen() -> None:
            message: Message = {"type": ""}
            while message["type"] != "http.disconnect":
                message = await receive()
            gone.set()

        async def shutdown() -> None:
            await self._closing.wait()

        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        jobs: list[Callable[[], Coroutine[Any, Any, None]]] = [produce, ping, listen, shutdown]
        tasks = [asyncio.create_task(job(), name=f"taskstore-events-{job.__name__}") for job in jobs]
        try:
            await asyncio.wait(tasks, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not gone.is_set():
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _statuses(store: Store, ids: list[str]) -> AsyncGenerator[bytes, None]:
    """Every id's statuses as ``status`` events, in each id's order; ``end`` once all are terminal."""
    arrivals: asyncio.Queue[TaskStatus | BaseException | None] = asyncio.Queue()

    async def follow(one: str) -> None:
        try:
            async for status in store.watch(one, poll_interval=max(store.poll_interval, WATCH_POLL)):
                arrivals.put_nowait(status)
        except Exception as exc:
            arrivals.put_nowait(exc)
        else:
            arrivals.put_nowait(None)  # terminal: this id is done

    followers = [asyncio.create_task(follow(one), name="taskstore-events-watch") for one in ids]
    sequence = 0
    try:
        remaining = len(followers)
        while remaining:
            item = await arrivals.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                sequence += 1
                yield frame("status", JSON_ENCODER.encode(convert.status_out(item)), str(sequence))
        yield frame("end", b"{}", END_ID)
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def _queues(store: Store, interval: float) -> AsyncGenerator[bytes, None]:
    """A ``queues`` snapshot at once, then after changes, at most one per ``interval``, none unchanged."""
    # The driver's wake key names the database: every store of this process on it shares the channels.
    key = (await store._ready()).wake_key
    channels = (("status", key), key)  # a task or status changed; new claimable work (PostgreSQL inserts)
    waiter = HUB.subscribe(channels[0])
    HUB.subscribe(channels[1], waiter)
    last: bytes | None = None
    sequence = 0
    try:
        while True:
            started = time.monotonic()
            snapshot = JSON_ENCODER.encode(QueuesOut(queues=[convert.queue_out(q) for q in await store.list_queues()]))
            if snapshot != last:
                last = snapshot
                sequence += 1
                yield frame("queues", snapshot, str(sequence))
            await waiter.wait(max(interval, QUEUES_POLL))
            # Coalesce: whatever else changes meanwhile is in the next snapshot.
            await asyncio.sleep(max(0.0, started + interval - time.monotonic()))
    finally:
        for channel in channels:
            HUB.unsubscribe(channel, waiter)


async def events(call: Call) -> Response | None:
    q: EventsQuery = call.query
    if call.request.headers.get("last-event-id") == END_ID:
        return None  # 204: an EventSource stops reconnecting to a stream that ended
    source = _statuses(call.store, list(dict.fromkeys(q.id))) if q.id else _queues(call.store, q.interval)
    return EventStream(source, timeout=q.timeout, closing=closing(call.state))


DESCRIPTION = (
    "Server-sent events. With `id` (repeated, up to 100): event `status` (data: a `StatusOut`) with each id's "
    "current status and then each change; once every id is terminal, event `end` (id `end`) and the stream "
    "ends. Without `id`: event `queues` (data: a `QueuesOut`) at connect and after changes, at most one per "
    "`interval` seconds. A `: ping` comment every 15 s. `timeout` (seconds) ends the stream. A reconnect with "
    "`Last-Event-ID: end` is answered 204; any other Last-Event-ID restarts from the current statuses. "
    "Streams end when the server shuts down."
)

ENDPOINT = Endpoint(
    "GET", "/events", "events", "Server-sent events of status changes, or queue snapshots", Role.READ, events,
    response=str, query=EventsQuery, errors=(401, 403, 422, 503), tag="results", media_type=EVENT_STREAM,
    description=DESCRIPTION,
)  # fmt: skip
