"""The application API: a registry of tasks, typed enqueue, and handles to wait for results.

    app = taskstore.App("sqlite:///tasks.db")

    @app.task(queue="mail", max_attempts=5, timeout=30)
    async def send(to: str, subject: str = "") -> bool: ...

    handle = await send.enqueue("a@example.com", subject="hi")   # typed from send's signature
    sent = await handle.result(timeout=10)

A call ``fn.enqueue(*args, **kwargs)`` stores ``args={"args": [...], "kwargs": {...}}``, encoded by the
App's codec; ``kind`` is ``"module.qualname"`` of the function unless ``@app.task(kind=…)`` names it.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast, overload

from . import _joins, errors, limits
from ._connect import default_url, redact
from ._connect import open as open_store
from ._sync import LoopThread, run_inline
from .canvas import Chain, Chord, Group, Signature
from .clock import Clock
from .codec import Codec
from .control import ExceptionTypes, check_retry_for
from .model import NewTask, RecurringTask, State, Task, as_seconds, check_queue, unique_states
from .retry import RetryPolicy
from .schedule import parse_schedule
from .store import Store

if TYPE_CHECKING:
    from .middleware import Middleware, ThreadContext

P = ParamSpec("P")
R = TypeVar("R")

KeyFunction = Callable[[tuple[Any, ...], dict[str, Any]], "str | None"]
"""``unique_key``/``concurrency_key`` computed per call from its positional args and kwargs (``None``: no key)."""
KeyOption = str | KeyFunction

DEFAULT_QUEUE = "default"


class _Keep:
    """The type of ``KEEP``: "leave this setting as it is" (``None`` is a setting of its own)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


class TaskFailed(errors.TaskstoreError):
    """The task went ``dead``; ``failure`` says why its last attempt failed."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.failure = task.result.failure if task.result is not None else None
        what = f"{self.failure.type}: {self.failure.message}" if self.failure else "no failure recorded"
        super().__init__(f"task {task.id!r} ({task.kind}) failed after {task.attempts} attempt(s): {what}")


class TaskCancelled(errors.TaskstoreError):
    """The task was cancelled before it finished."""

    def __init__(self, task: Task) -> None:
        self.task = task
        super().__init__(f"task {task.id!r} ({task.kind}) was cancelled")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    queue: str = DEFAULT_QUEUE
    kind: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None  # the handler's execution limit, enforced by the worker
    retry: RetryPolicy | None = None
    priority: int = 0
    processing_timeout: float | None = None  # the lease, renewed by the worker's heart-beat
    retry_for: ExceptionTypes | None = None  # only these exceptions retry; None: every exception does
    # Flow control (SPEC §9), for every call unless .options() says otherwise.
    unique_key: KeyOption | None = None
    unique_for: float | None = None
    unique_states: frozenset[State] | None = None
    concurrency_key: KeyOption | None = None
    expires: float | None = None  # seconds from enqueue


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call options: ``fn.options(delay=…, id=…).enqueue(...)``."""

    delay: float | None = None
    run_at: datetime | None = None
    id: str | None = None
    priority: int | None = None
    queue: str | None = None
    context: Mapping[str, Any] | None = None
    group_id: str | None = None
    unique_key: KeyOption | None = None
    unique_for: float | None = None
    unique_states: frozenset[State] | None = None
    concurrency_key: KeyOption | None = None
    expires: float | None = None
    max_attempts: int | None = None
    processing_timeout: float | None = None
    retry: RetryPolicy | None = None
    conn: Any = None  # the caller's transaction to join (see _joins)


class TaskHandle(Generic[R]):
    """A reference to an enqueued task, to read its state or wait for its result."""

    def __init__(self, app: App, task_id: str, task: Task | None = None) -> None:
        self.app = app
        self.id = task_id
        self.task = task  # as last read; ``get()`` refreshes it

    async def get(self) -> Task:
        self.task = await self.app.on_home(lambda store: store.get(self.id))
        return self.task

    async def result(self, timeout: float | timedelta | None = None) -> R:  # noqa: ASYNC109 (SPEC §7 names it)
        """The handler's return value once the task is ``done``.

        Raises ``TaskFailed`` when it went ``dead``, ``TaskCancelled`` when it was cancelled, and
        ``TimeoutError`` when ``timeout`` seconds pass first (the task itself is not touched).
        """
        limit = None if timeout is None else as_seconds(timeout, "timeout")
        task = await self.app.on_home(lambda store: self._ended(store, limit))
        self.task = task
        if task.state is State.DONE:
            return cast(R, task.result.value if task.result is not None else None)
        if task.state is State.DEAD:
            raise TaskFailed(task)
        raise TaskCancelled(task)

    async def _ended(self, store: Store, limit: float | None) -> Task:
        task = await store.get(self.id)  # an unknown id is NotFound at once, not a long wait
        if task.state.is_terminal:
            return task
        try:
            async with asyncio.timeout(limit):
                async for status in store.watch(self.id):
                    if status.state.is_terminal:
                        break
        except TimeoutError:
            raise TimeoutError(f"task {self.id!r} did not finish within {limit:g}s") from None
        return await store.get(self.id)

    def result_sync(self, timeout: float | timedelta | None = None) -> R:
        return self.app.run_sync(self.result(timeout))

    async def cancel(self) -> Task:
        self.task = await self.app.on_home(lambda store: store.cancel(self.id))
        return self.task

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"


class _Enqueuer(Generic[P, R]):
    def __init__(self, fn: TaskFunction[P, R], call: CallOptions) -> None:
        self._fn = fn
        self._call = call

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        return await self._fn._enqueue(self._call, args, kwargs)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        if self._call.conn is not None:
            return self._fn._enqueue_joined_sync(self._call, args, kwargs)
        return self._fn.app.run_sync(self._fn._enqueue(self._call, args, kwargs))

    def new_task(self, *args: P.args, **kwargs: P.kwargs) -> NewTask:
        return self._fn._new_task(self._call, args, kwargs)


class TaskFunction(Generic[P, R]):
    """A registered task: call it directly as the plain function, or ``enqueue`` it for a worker."""

    def __init__(self, app: App, fn: Callable[P, R] | Callable[P, Awaitable[R]], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options_ = options
        self.kind: str = options.kind or f"{fn.__module__}.{fn.__qualname__}"
        self.queue = options.queue
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.kind)
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        id: str | None = None,
        priority: int | None = None,
        queue: str | None = None,
        context: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        unique_key: KeyOption | None = None,
        unique_for: float | timedelta | None = None,
        unique_states: Collection[State | str] | None = None,
        concurrency_key: KeyOption | None = None,
        expires: float | timedelta | None = None,
        max_attempts: int | None = None,
        processing_timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        conn: Any = None,
    ) -> _Enqueuer[P, R]:
        """Per-call options; ``id`` is an idempotency key (a second enqueue raises ``AlreadyExists``).

        ``priority``, ``max_attempts``, ``processing_timeout`` and ``retry`` replace the task's own for
        this call. ``unique_key``/``concurrency_key`` (a string, or a function of ``(args, kwargs)``
        returning one or ``None``), ``unique_for`` and ``unique_states`` replace the task's own; ``expires``
        (seconds or a ``timedelta``) sets ``expires_at`` to that long after the enqueue (SPEC §9).

        ``conn`` joins the caller's transaction: the task exists if and only if it commits. It takes a
        ``sqlite3`` or psycopg connection, a SQLAlchemy ``Connection``/``Session`` (``enqueue_sync``) or
        ``AsyncConnection``/``AsyncSession`` (``await enqueue``), or a Django connection; the insert runs on
        that connection, in the caller's thread.
        """
        if delay is not None and run_at is not None:
            raise errors.InvalidTask("give delay= or run_at=, not both")
        seconds = None if delay is None else as_seconds(delay, "delay")
        if queue is not None:
            check_queue(queue)  # an empty name must not fall back to the task's queue unnoticed
        flow = _flow_options(unique_key, unique_for, unique_states, concurrency_key, expires)
        # The same rules as NewTask's, checked here where the mistake is made rather than at each enqueue.
        probe = NewTask(
            queue or self.queue,
            self.kind,
            max_attempts=max_attempts,
            priority=priority or 0,
            processing_timeout=processing_timeout,
            retry=retry,
        )
        call = CallOptions(
            delay=seconds,
            run_at=run_at,
            id=id,
            priority=priority,
            queue=queue,
            context=context,
            group_id=group_id,
            max_attempts=max_attempts,
            processing_timeout=cast(float | None, probe.processing_timeout),
            retry=retry,
            conn=conn,
            **flow,
        )
        return _Enqueuer(self, call)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        return await self._enqueue(_NO_OPTIONS, args, kwargs)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """``enqueue`` from plain sync code (no running event loop needed)."""
        return self.app.run_sync(self._enqueue(_NO_OPTIONS, args, kwargs))

    def new_task(self, *args: P.args, **kwargs: P.kwargs) -> NewTask:
        """The ``NewTask`` that ``enqueue`` would create: for ``store.create_many`` or ``conn=``."""
        return self._new_task(_NO_OPTIONS, args, kwargs)

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        """This task with these arguments, to put in a group or a chord."""
        return Signature(self, args, dict(kwargs))

    def _new_task(self, call: CallOptions, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> NewTask:
        o = self.options_
        run_at = call.run_at
        if call.delay is not None:
            run_at = self.app.now() + timedelta(seconds=call.delay)
        expires = o.expires if call.expires is None else call.expires
        key_option = o.unique_key if call.unique_key is None else call.unique_key
        unique_for = o.unique_for if call.unique_for is None else call.unique_for
        unique_states_ = o.unique_states if call.unique_states is None else call.unique_states
        if key_option is None and (unique_for is not None or unique_states_ is not None):
            raise errors.InvalidTask("unique_for and unique_states need a unique_key")
        unique_key = self._key("unique_key", key_option, args, kwargs)
        if unique_key is None:  # a key function's None means "not unique": its window and states go too
            unique_for = unique_states_ = None
        concurrency = o.concurrency_key if call.concurrency_key is None else call.concurrency_key
        return NewTask(
            call.queue or o.queue,
            self.kind,
            {"args": list(args), "kwargs": dict(kwargs)},
            id=call.id,
            priority=o.priority if call.priority is None else call.priority,
            run_at=run_at,
            max_attempts=o.max_attempts if call.max_attempts is None else call.max_attempts,
            processing_timeout=o.processing_timeout if call.processing_timeout is None else call.processing_timeout,
            retry=o.retry if call.retry is None else call.retry,
            context=call.context,
            group_id=call.group_id,
            unique_key=unique_key,
            unique_for=unique_for,
            unique_states=unique_states_,
            concurrency_key=self._key("concurrency_key", concurrency, args, kwargs),
            expires_at=None if expires is None else self.app.now() + timedelta(seconds=expires),
        )

    def _key(self, what: str, option: KeyOption | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
        """A key option for this call: the string itself, or what its function returns for these arguments."""
        if option is None or isinstance(option, str):
            return option
        try:
            key = option(tuple(args), dict(kwargs))
        except Exception as exc:  # the caller's function: its failure is bad input to this enqueue
            raise errors.InvalidTask(f"{self.kind}: the {what} function raised {type(exc).__name__}: {exc}") from exc
        if key is not None and not isinstance(key, str):
            raise errors.InvalidTask(f"{self.kind}: the {what} function must return a str or None, got {key!r}")
        return key

    async def _enqueue(self, call: CallOptions, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> TaskHandle[R]:
        if call.conn is not None:
            join = await _joins.aresolve(call.conn)
            self.app._unopened_store().check_join_opens(join)
            store = await self.app.store()  # open first: a delay is counted on the store's clock
            task = await store.create(self._new_task(call, args, kwargs), conn=join)  # on the caller's loop
            return TaskHandle(self.app, task.id, task)

        async def create(store: Store) -> Task:
            return await store.create(self._new_task(call, args, kwargs))

        task = await self.app.on_home(create)
        handle: TaskHandle[R] = TaskHandle(self.app, task.id, task)
        if self.app.eager:  # a conn= task is not there before its commit: drain() runs it then
            await self.app._run_eagerly([task.id])
            await handle.get()
        return handle

    def _enqueue_joined_sync(
        self, call: CallOptions, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> TaskHandle[R]:
        """``enqueue_sync`` with ``conn=``: the insert runs here, in the caller's thread, on its connection.

        A sync connection (and Django's or SQLAlchemy's objects over one) belongs to the caller's thread,
        so the store is opened on its own loop first and the insert itself never goes near that loop.
        """
        join = _joins.resolve(call.conn)
        if join.is_async:
            raise errors.ConfigError(
                f"conn= is an async connection ({join.source}): use `await fn.options(conn=...).enqueue(...)`"
            )
        self.app._unopened_store().check_join_opens(join)
        store = self.app.run_sync(self.app.store())
        task = run_inline(store.create(self._new_task(call, args, kwargs), conn=join))
        return TaskHandle(self.app, task.id, task)

    def __repr__(self) -> str:
        return f"<TaskFunction {self.kind} queue={self.queue}>"


_NO_OPTIONS = CallOptions()


def _flow_options(
    unique_key: object,
    unique_for: float | timedelta | None,
    unique_states_: Collection[State | str] | None,
    concurrency_key: object,
    expires: float | timedelta | None,
) -> dict[str, Any]:
    """SPEC §9's App options, checked once where they are given (a key function is checked at each call)."""
    return {
        "unique_key": _key_option(unique_key, "unique_key"),
        "unique_for": None if unique_for is None else as_seconds(unique_for, "unique_for", positive=True),
        "unique_states": None if unique_states_ is None else unique_states(unique_states_),
        "concurrency_key": _key_option(concurrency_key, "concurrency_key"),
        "expires": None if expires is None else as_seconds(expires, "expires", positive=True),
    }


def _key_option(value: object, what: str) -> KeyOption | None:
    if value is None or callable(value):
        return cast(KeyOption | None, value)
    return limits.name(value, what)


@dataclass(frozen=True, slots=True)
class RecurringSpec:
    id: str
    schedule: str
    task: TaskFunction[Any, Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    skip_if_outstanding: bool = True

    def to_recurring(self, owner: str | None = None) -> RecurringTask:
        o = self.task.options_
        template = NewTask(
            o.queue,
            self.task.kind,
            {"args": list(self.args), "kwargs": dict(self.kwargs)},
            priority=o.priority,
            max_attempts=o.max_attempts,
            processing_timeout=o.processing_timeout,
            retry=o.retry,
        )
        return RecurringTask(
            self.id, self.schedule, template, skip_if_outstanding=self.skip_if_outstanding, owner=owner
        )


class App:
    """A registry of tasks over one store URL. No global state: make as many as you need.

    ``name`` owns the App's recurring schedules in the store: a starting worker stores the schedules the
    App declares and removes the stored ones of the same name that it no longer declares. It defaults to
    the module that creates the App (``myproj.tasks``; a script run as a file: its file name without
    ``.py``), which stays the same from one version of the code to the next. Two Apps sharing a store
    need different names: give one ``name=`` when both are created in one module.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        eager: bool = False,
        eager_propagates: bool = True,
        **store_options: Any,
    ) -> None:
        self.name: str = (
            limits.name(name, "App name", error=errors.ConfigError) if name is not None else _creator_module()
        )
        self._url = url
        self._codec = codec
        self._clock = clock
        self.eager = False  # see configure()
        self.eager_propagates = True
        self.store_options = store_options
        self.tasks: dict[str, TaskFunction[Any, Any]] = {}
        self.middlewares: list[Middleware] = []
        self.thread_contexts: list[ThreadContext] = []
        self.recurring_specs: dict[str, RecurringSpec] = {}
        self._store: Store | None = None
        self._home: asyncio.AbstractEventLoop | None = None  # the loop the store lives on (see on_home)
        self._lock = threading.Lock()
        self._sync = LoopThread()
        self.configure(url=url, clock=clock, codec=codec, eager=eager, eager_propagates=eager_propagates)

    # -- settings -------------------------------------------------------------------------------

    def configure(
        self,
        *,
        url: str | _Keep | None = KEEP,
        clock: Clock | _Keep | None = KEEP,
        codec: Codec | _Keep | None = KEEP,
        eager: bool | _Keep = KEEP,
        eager_propagates: bool | _Keep = KEEP,
    ) -> App:
        """Replace some of the App's settings; what is not given is kept. Returns the App.

        For tests of a module-level App (``taskstore.testing.plugin``'s ``taskstore_app`` does it and undoes
        it): ``app.configure(url="memory://", clock=FakeClock(), eager=True)``. ``url``, ``clock`` and
        ``codec`` choose the store, so they are refused with ``ConfigError`` while it is open (close it with
        ``await app.aclose()`` or ``app.close()`` first); a closed store is dropped and the next use opens
        one with the new settings. ``None`` means the default (``$TASKSTORE_URL``, the system clock, JSON).

        ``eager=True``: ``enqueue``/``enqueue_sync`` (and groups, chords, chains) store the task and run
        it in this process before returning, through the worker's own path (middleware, handler, the
        failure's retry or dead-letter decision), so ``handle.result()`` is ready. Only the attempt due
        now runs: a failure with attempts left leaves the task ``failed`` until its retry's ``run_at``
        (``taskstore.testing.run_until_complete`` runs the retries on a ``FakeClock``), a delayed task
        waits for its ``run_at``, and a task enqueued with ``conn=`` runs only once it is committed (by
        ``drain``). With ``eager_propagates`` (the default) an attempt that fails re-raises the handler's
        exception from ``enqueue`` after its failure is recorded; without it, ``enqueue`` returns the
        handle and ``handle.result()`` tells (``TaskFailed`` once the task is ``dead``).
        """
        store_settings = {
            name: value for name, value in (("url", url), ("clock", clock), ("codec", codec)) if value is not KEEP
        }
        if not isinstance(url, _Keep | str | None):
            raise errors.ConfigError(f"url must be a string or None, got {type(url).__name__}")
        if not isinstance(clock, _Keep | None) and not isinstance(clock, Clock):
            raise errors.ConfigError(f"clock must have a now() method (a taskstore.clock.Clock), got {clock!r}")
        if not isinstance(codec, _Keep | None) and not isinstance(codec, Codec):
            raise errors.ConfigError(f"codec must be a taskstore.codec.Codec, got {type(codec).__name__}")
        for name, flag in (("eager", eager), ("eager_propagates", eager_propagates)):
            if not isinstance(flag, _Keep | bool):
                raise errors.ConfigError(f"{name} must be True or False, got {flag!r}")
        if store_settings:
            self._drop_closed_store(", ".join(store_settings))
        if not isinstance(url, _Keep):
            self._url = url
        if not isinstance(clock, _Keep):
            self._clock = clock
        if not isinstance(codec, _Keep):
            self._codec = codec
        if not isinstance(eager, _Keep):
            self.eager = eager
        if not isinstance(eager_propagates, _Keep):
            self.eager_propagates = eager_propagates
        return self

    def _drop_closed_store(self, what: str) -> None:
        """Store settings change only while no store is open; a closed one (or one whose loop has ended) is
        dropped, so the next use opens a store with the new settings."""
        with self._lock:
            store, home = self._store, self._home
            if store is not None and store._opened and not (home is not None and home.is_closed()):
                raise errors.ConfigError(
                    f"App {self.name!r}: cannot change {what} while its store is open; "
                    "close it first (await app.aclose(), or app.close() from sync code)"
                )
            self._store, self._home = None, None

    @property
    def url(self) -> str | None:
        return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        self.configure(url=value)

    def configured_url(self) -> str | None:
        """The store URL the App's own configuration names (``None``: none, so a worker falls back to
        ``$TASKSTORE_URL`` or the default). An App configured by a framework's settings reads them here
        (``taskstore.contrib.django.DjangoApp``), so the worker's ``--url`` precedence covers it too."""
        return self.url

    @property
    def clock(self) -> Clock | None:
        """The clock the App's store decides with (``None``: the system clock); set it before the store opens."""
        return self._clock

    @clock.setter
    def clock(self, value: Clock | None) -> None:
        self.configure(clock=value)

    @property
    def codec(self) -> Codec | None:
        return self._codec

    @codec.setter
    def codec(self, value: Codec | None) -> None:
        self.configure(codec=value)

    async def _run_eagerly(self, ids: Sequence[str]) -> None:
        """Eager mode: run these just-enqueued tasks (in order, those that are due) before enqueue returns."""
        from ._inline import run_now  # the worker's path; worker.py imports this module

        raised = await self.on_home(lambda store: run_now(self, store, ids))
        if raised is not None and self.eager_propagates:
            raise raised

    # -- registration ---------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> TaskFunction[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        queue: str = ...,
        kind: str | None = ...,
        max_attempts: int | None = ...,
        timeout: float | timedelta | None = ...,
        retry: RetryPolicy | None = ...,
        priority: int = ...,
        processing_timeout: float | timedelta | None = ...,
        retry_for: type[BaseException] | Iterable[type[BaseException]] | None = ...,
        unique_key: KeyOption | None = ...,
        unique_for: float | timedelta | None = ...,
        unique_states: Collection[State | str] | None = ...,
        concurrency_key: KeyOption | None = ...,
        expires: float | timedelta | None = ...,
    ) -> _Decorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        queue: str = DEFAULT_QUEUE,
        kind: str | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        priority: int = 0,
        processing_timeout: float | timedelta | None = None,
        retry_for: type[BaseException] | Iterable[type[BaseException]] | None = None,
        unique_key: KeyOption | None = None,
        unique_for: float | timedelta | None = None,
        unique_states: Collection[State | str] | None = None,
        concurrency_key: KeyOption | None = None,
        expires: float | timedelta | None = None,
    ) -> Any:
        """Register a sync or async function as a task (``@app.task`` or ``@app.task(queue=…)``).

        ``retry_for=(ExcType, ...)``: only exceptions that are instances of these retry; any other
        goes ``dead`` at once (``raise taskstore.Retry()`` still retries, ``Reject`` never does).
        ``unique_key``/``concurrency_key``: a string, or ``fn(args, kwargs) -> str | None`` called at
        each enqueue; with ``unique_for``, ``unique_states`` and ``expires`` they are the defaults of
        every call (``.options(...)`` overrides them), see SPEC §9.
        """
        check_queue(queue)
        # Validate the options once, at registration, with the same rules NewTask applies.
        probe = NewTask(
            queue,
            kind or "probe",
            max_attempts=max_attempts,
            priority=priority,
            processing_timeout=processing_timeout,
            retry=retry,
        )
        limit = None if timeout is None else as_seconds(timeout, "timeout", positive=True)
        options = TaskOptions(
            queue=queue,
            kind=kind,
            max_attempts=max_attempts,
            timeout=limit,
            retry=retry,
            priority=priority,
            processing_timeout=cast(float | None, probe.processing_timeout),
            retry_for=check_retry_for(retry_for),
            **_flow_options(unique_key, unique_for, unique_states, concurrency_key, expires),
        )
        if options.unique_key is None and (options.unique_for is not None or options.unique_states is not None):
            raise errors.InvalidTask("unique_for and unique_states need a unique_key")

        def register(f: Callable[..., Any]) -> TaskFunction[Any, Any]:
            wrapped: TaskFunction[Any, Any] = TaskFunction(self, f, options)
            if wrapped.kind in self.tasks and self.tasks[wrapped.kind].fn is not f:
                raise errors.ConfigError(f"two tasks share the kind {wrapped.kind!r}; name one with kind=")
            self.tasks[wrapped.kind] = wrapped
            return wrapped

        return register(fn) if fn is not None else register

    def middleware(self, fn: Middleware) -> Middleware:
        """Register a ``call_next`` middleware around every handler this App's workers run."""
        self.middlewares.append(fn)
        return fn

    def thread_context(self, factory: ThreadContext) -> ThreadContext:
        """Run every sync handler inside ``factory()``, entered and exited in the handler's own thread.

        For per-thread resources that ``middleware`` (which runs on the event loop) cannot reach:
        ``taskstore.contrib.django`` recycles Django's database connections this way. Async handlers
        run on the loop and are not wrapped. Registered factories nest in order, the first outermost.
        """
        self.thread_contexts.append(factory)
        return factory

    def recurring(
        self,
        id: str,
        *,
        task: TaskFunction[Any, Any],
        cron: str | None = None,
        every: str | float | timedelta | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        skip_if_outstanding: bool = True,
    ) -> RecurringSpec:
        """Run ``task`` on a schedule: ``cron="*/5 * * * *"`` or ``every="30s"`` (or seconds).

        Workers store the schedule on start and fire it: one task per slot, however many run.
        """
        if (cron is None) == (every is None):
            raise errors.InvalidTask("recurring() takes exactly one of cron= or every=")
        if every is not None:
            # Plain decimals: the @every syntax has no exponent, which "g" would write from 1e6 s up.
            seconds = (
                every if isinstance(every, str) else f"{as_seconds(every, 'every'):f}".rstrip("0").rstrip(".") + "s"
            )
            schedule = f"@every {seconds}"
        else:
            schedule = cast(str, cron)
        spec = RecurringSpec(id, schedule, task, tuple(args), dict(kwargs or {}), skip_if_outstanding)
        spec.to_recurring()  # validates the id, the schedule and the template now, not in a worker
        parse_schedule(schedule).next_slot(self.now())  # and that it fires at all (not "0 0 30 2 *")
        self.recurring_specs[id] = spec
        return spec

    async def store_recurring(self, store: Store) -> list[str]:
        """Store the schedules this App declares, owned by its name, and remove the stored schedules of
        that name it no longer declares (a worker does this on start); returns the removed ids.

        Schedules added by hand (``store.add_recurring``, no owner) and other Apps' are left alone.
        """
        for spec in self.recurring_specs.values():
            await store.add_recurring(spec.to_recurring(owner=self.name))
        stale = [
            r.id for r in await store.list_recurring() if r.owner == self.name and r.id not in self.recurring_specs
        ]
        for recurring_id in stale:
            await store.remove_recurring(recurring_id)
        return stale

    def group(self, *members: Signature[Any], ttl: float | timedelta | None = None) -> Group:
        """Run the members in parallel and gather their results (``await group.enqueue()``)."""
        return Group(self, members, ttl=ttl)

    def chord(self, group: Group | Sequence[Signature[Any]], callback: Signature[Any]) -> Chord:
        """When every member of ``group`` has succeeded, run ``callback(results, *args)`` exactly once."""
        return Chord(self, group, callback)

    def chain(self, *links: Signature[Any], ttl: float | timedelta | None = None) -> Chain:
        """Run the links one after another, each with the previous one's result as its first argument.

        ``await app.chain(a.s(1), b.s(), c.s(k=2)).enqueue()`` runs ``c(b(a(1)), k=2)``; a link that
        ends ``dead`` or ``cancelled`` stops the chain (``handle.result()`` raises ``ChainFailed``).
        """
        return Chain(self, links, ttl=ttl)

    # -- the store ------------------------------------------------------------------------------
    #
    # The App's store lives on one event loop, its *home*: the loop that first opened it (the caller's, or the
    # App's private loop thread for sync callers). A store's connections belong to its loop, so the App's own
    # operations run there from wherever they are called: ``on_home`` hops to the home loop from another
    # loop, ``run_sync`` from plain threads. One pool serves a web app's async and sync endpoints alike.

    def now(self) -> datetime:
        if self._store is not None:
            return self._store.now()
        from .clock import SystemClock

        return (self.clock or SystemClock()).now()

    def open_store(self) -> Store:
        """A new, unopened Store with this App's URL, codec, clock and options (the caller owns it)."""
        options = dict(self.store_options)
        if self.clock is not None:
            options["clock"] = self.clock
        return open_store(self.url or default_url(), codec=self.codec, **options)

    def _unopened_store(self) -> Store:
        """The App's store object, made now if need be, without opening it or choosing its loop."""
        with self._lock:
            if self._store is None:
                self._store = self.open_store()
            return self._store

    def _current(self) -> tuple[Store, asyncio.AbstractEventLoop]:
        """The App's store and its home loop; the running loop becomes home when there is none."""
        loop = asyncio.get_running_loop()
        with self._lock:
            store, home = self._store, self._home
            if home is not None and home.is_closed():
                # Its loop ended (a test's loop, an asyncio.run() that returned) and its connections with it.
                home = None
                if store is not None:
                    try:
                        store.rebind()  # memory:// keeps its tasks
                    except errors.ConfigError:
                        store = None
            if store is None:
                store = self.open_store()
            self._store, self._home = store, home or loop
            return store, self._home

    async def store(self) -> Store:
        """The App's store, opened on first use and shared by every caller of this App.

        It belongs to the loop that opened it; from another loop, use the App's API (``fn.enqueue``,
        ``handle.result``, ``app.on_home``), which runs there.
        """
        store, home = self._current()
        if home is asyncio.get_running_loop() or store.loop_free:
            return await store.connect()
        await _hop(home, store.connect())
        return store

    async def on_home(self, fn: Callable[[Store], Awaitable[R]]) -> R:
        """``await fn(store)`` on the store's own loop, from any loop."""
        store, home = self._current()
        if home is asyncio.get_running_loop() or store.loop_free:
            return await fn(await store.connect())

        async def there() -> R:
            return await fn(await self.store())

        return await _hop(home, there())

    async def loop_store(self) -> tuple[Store, bool]:
        """A store for the running loop: the App's own when it lives here (or nowhere yet), else a new one,
        with True when the caller owns it and must close it (a worker started on a loop of its own)."""
        store, home = self._current()
        if home is asyncio.get_running_loop() or store.loop_free:
            return await store.connect(), False
        return await self.open_store().connect(), True

    def run_sync(self, coro: Awaitable[R]) -> R:
        """Run one of this App's coroutines from sync code, on the store's loop.

        That is the loop that opened the store when it runs in another thread (a web server's), else the
        App's private loop thread. Called on the store's own loop it would wait for itself: ``ConfigError``.
        """
        with self._lock:
            home = self._home if self._store is not None else None
        if home is not None and not home.is_closed() and home is not self._sync.loop:
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is home:
                _close(coro)
                raise errors.ConfigError(
                    "a sync taskstore call (enqueue_sync, result_sync, run_sync) was made on the event loop that "
                    "runs the App's store, and would wait for itself: use the async form (await fn.enqueue(...))"
                )
            if home.is_running():
                return asyncio.run_coroutine_threadsafe(_as_coroutine(coro), home).result()
        return self._sync.run(_as_coroutine(coro))

    async def aclose(self) -> None:
        """Close the App's store (on its loop); the next use opens it again."""
        with self._lock:
            store, home = self._store, self._home
        if store is None or home is None:
            return
        if home.is_closed():
            self._forget(home)
        elif home is asyncio.get_running_loop():
            await store.close()
        else:
            await _hop(home, store.close())
        with self._lock:
            if self._home is home:
                self._home = None

    def close(self) -> None:
        """Close the store and stop the sync facade's loop (for sync programs)."""
        with self._lock:
            store, home = self._store, self._home
        if store is not None and home is not None:
            if home.is_closed():
                self._forget(home)
            else:
                self.run_sync(store.close())
                with self._lock:
                    if self._home is home:
                        self._home = None
        self._sync.close()

    def _forget(self, home: asyncio.AbstractEventLoop) -> None:
        """Drop a store whose loop has closed (nothing of it can be closed any more), keeping memory's."""
        with self._lock:
            if self._home is not home:
                return
            self._home = None
            if self._store is not None:
                try:
                    self._store.rebind()
                except errors.ConfigError:
                    self._store = None

    async def __aenter__(self) -> App:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def handle(self, task_id: str) -> TaskHandle[Any]:
        """A handle on a task enqueued earlier (by id), to wait for its result."""
        return TaskHandle(self, task_id)

    def __repr__(self) -> str:
        return f"<taskstore.App {self.name!r} {redact(self.url or default_url())} tasks={len(self.tasks)}>"


def _creator_module() -> str:
    """The module whose code is creating an App: the caller of ``App.__init__``."""
    caller = sys._getframe(2).f_globals
    module = str(caller.get("__name__") or "__main__")
    if module == "__main__":
        # Run as ``python -m pkg.mod`` the spec keeps the importable name; run as a file, its stem is the
        # name under which ``taskstore worker mod:app`` imports the same code.
        spec = caller.get("__spec__")
        if spec is not None and getattr(spec, "name", None):
            module = str(spec.name)
        elif caller.get("__file__"):
            module = Path(str(caller["__file__"])).stem
    return module


class _Decorator:
    def __init__(self) -> None:  # pragma: no cover - a typing device only
        raise TypeError

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> TaskFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Any: ...


async def _as_coroutine(awaitable: Awaitable[R]) -> R:
    return await awaitable


def _close(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine that will not run (no "never awaited" warning)."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()


async def _hop(home: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` on ``home`` (a loop in another thread) and wait for it on the running loop."""
    if not home.is_running():
        coro.close()
        raise errors.ConfigError(
            "the App's store was opened on an event loop that is not running now: close it there "
            "(await app.aclose()) or open it on the loop you use"
        )
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, home))
