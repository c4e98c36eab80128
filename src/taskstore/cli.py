"""The ``taskstore`` command: a thin adapter over the public API, built by a factory.

Tables where a person reads, ``--json`` where a script reads. Bad input and store errors print one
line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import _ids, _loops, errors, limits
from ._connect import default_url, redact, worker_url
from ._connect import open as open_store
from ._gc import freeze_startup
from ._render import json_text, printable, task_json
from .client import App
from .model import Limit, NewTask, QueueInfo, RecurringTask, State, Task, WorkerHeartbeat, check_queue
from .store import Store
from .transitions import CANCELLED, TIMED_OUT

if TYPE_CHECKING:
    from .web.metrics import WorkerExporter
    from .worker import Worker

R = TypeVar("R")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="TASKSTORE_URL", help="Store URL [default: sqlite:///taskstore.db]", show_default=False
    ),
]
WorkerUrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Store URL [default: the App's own URL, else $TASKSTORE_URL, else sqlite:///taskstore.db]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``24h``, ``7d``, ``2w`` or ``250ms``."""
    match = _DURATION.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 24h or 7d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not seconds <= limits.MAX_DURATION:  # also catches inf from a very long run of digits
        raise typer.BadParameter(f"{text!r} is longer than the longest duration taskstore accepts (100 years)")
    return timedelta(seconds=seconds)


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``1048576``, ``512KB``, ``10MB`` or ``1GB`` (powers of 1024) as bytes."""
    match = _SIZE.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a size like 10MB or 512KB")
    power: int = {"": 0, "b": 0, "kb": 1, "mb": 2, "gb": 3}[match.group(2).lower()]
    return int(match.group(1)) * (1 << (10 * power))


class _Cli:
    def __init__(self) -> None:
        # Piped output is not cut to 80 columns: a script or a pager gets whole rows.
        self.out = Console(width=None if sys.stdout.isatty() else 200)
        self.err = Console(stderr=True, soft_wrap=True)

    def run(self, url: str | None, action: Callable[[Store], Awaitable[R]], *, create: bool = True) -> R:
        """Open the store, run ``action``; a command that only reads passes ``create=False`` (makes no store)."""

        async def go() -> R:
            async with open_store(url or default_url(), create=create) as store:
                return await action(store)

        try:
            return asyncio.run(go())
        except errors.TaskstoreError as exc:
            self.fail(exc)

    def fail(self, exc: Exception, code: int = 1) -> NoReturn:
        _error_line(str(exc), console=self.err)
        raise typer.Exit(code)

    def say(self, *parts: str) -> None:
        """A line for people; its parts are data (ids, kinds, messages), printed as text, never as markup."""
        self.out.print(Text(printable("".join(parts))), highlight=False)

    def print_json(self, value: Any) -> None:
        sys.stdout.write(json_text(value) + "\n")

    def tasks_table(self, tasks: list[Task]) -> None:
        table = Table(show_lines=False, header_style="bold")
        for column in ("id", "queue", "kind", "state", "attempts", "prio", "run_at", "updated_at"):
            table.add_column(column, no_wrap=column != "kind", overflow="fold")
        for t in tasks:
            table.add_row(
                _text(t.id),
                _text(t.queue),
                _text(t.kind),
                _state_text(t),
                f"{t.attempts}/{t.max_attempts}",
                str(t.priority),
                f"{t.run_at:%Y-%m-%d %H:%M:%S}",
                f"{t.updated_at:%Y-%m-%d %H:%M:%S}",
            )
        self.out.print(table)

    def task_detail(self, task: Task) -> None:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in task_json(task).items():
            if key == "failures":
                continue  # the attempts table below shows them (--json carries every field)
            shown = value if isinstance(value, str) else json_text(value, indent=None)
            table.add_row(key, _state_text(task) if key == "state" else _text(shown))
        self.out.print(table)
        rows = attempt_rows(task)
        if rows:
            attempts = Table(title="attempts", title_justify="left", header_style="bold")
            for column in ("#", "ended at", "worker", "outcome", "failure"):
                attempts.add_column(column, overflow="fold", no_wrap=column == "ended at")
            for row in rows:
                attempts.add_row(*(_text(cell) for cell in row))
            self.out.print(attempts)


class _LogFormatter(logging.Formatter):
    """Log records carry task data (ids, kinds, handlers' messages): a record stays one line, controls escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).splitlines())


_STATE_STYLE = {
    State.QUEUED: "cyan",
    State.CLAIMED: "yellow",
    State.FAILED: "magenta",
    State.DONE: "green",
    State.DEAD: "red",
    State.CANCELLED: "dim",
}


def load_app(target: str) -> App:
    """Import ``module:attribute`` (from the working directory too) and check it is an App."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"{target!r} is not MODULE:APP, e.g. myproj.tasks:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    django = _django_project()  # set up before the App's module imports: its tasks may use models
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from None
    found = getattr(module, attribute, None)
    if not isinstance(found, App):
        raise typer.BadParameter(f"{target!r} is {type(found).__name__}, not a taskstore.App")
    if django:
        from .contrib.django._setup import prepare

        prepare(found)
    return found


def _django_project() -> bool:
    """With ``$DJANGO_SETTINGS_MODULE`` set, ``django.setup()`` (see ``taskstore.contrib.django``)."""
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings_module:
        return False
    try:
        from .contrib.django._setup import setup_django
    except ImportError as exc:
        raise typer.BadParameter(f"DJANGO_SETTINGS_MODULE={settings_module} is set, but {exc}") from None
    setup_django()
    return True


_EXIT_WATCHDOG = 3.0  # seconds from a stopped worker to a forced exit


async def _run_worker(worker: Worker) -> None:
    try:
        await worker.start()
        freeze_startup()  # the App, the store and the modules they import live as long as the process (_gc.py)
        await worker.run(install_signals=True)
    finally:
        await worker.app.aclose()
        _exit_soon(1 if worker.forced else 0)


def _worker_metrics(host: str, port: int) -> WorkerExporter:
    """Start the worker's Prometheus endpoint (a thread of prometheus_client's own HTTP server)."""
    try:
        from .web.metrics import WorkerExporter
    except ImportError as exc:
        raise errors.ConfigError(f"--metrics-port needs the web extra: pip install 'taskstore[web]' ({exc})") from None
    exporter = WorkerExporter.start(host, port)
    logging.getLogger("taskstore.worker").info("serving worker metrics on http://%s:%d/metrics", host, exporter.port)
    return exporter


def _exit_soon(code: int) -> None:
    """Make sure the process ends a few seconds after its worker stopped, with ``code``.

    By now the worker has written what finished and released the rest, so nothing is lost by ending.
    Its own handler threads are daemons and never hold the exit, but a thread a handler started may:
    ``asyncio.to_thread`` (``asyncio.run`` joins the loop's default executor) or a non-daemon thread
    that never returns. Only the ``worker`` command arms this; it ends the process anyway.
    """

    def force() -> None:
        held_by = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
        logging.getLogger("taskstore.worker").warning(
            "the worker stopped but stuck threads hold the exit (%s); exiting now", ", ".join(held_by)
        )
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(_EXIT_WATCHDOG, force)
    timer.daemon = True
    timer.start()


def _heartbeat_json(b: WorkerHeartbeat) -> dict[str, Any]:
    return {
        "worker_id": b.worker_id,
        "queues": list(b.queues),
        "inflight": b.inflight,
        "host": b.host,
        "pid": b.pid,
        "version": b.version,
        "started_at": b.started_at.isoformat() if b.started_at else None,
        "timestamp": b.timestamp.isoformat() if b.timestamp else None,
        "extras": b.extras,
    }


_OUTCOMES = {TIMED_OUT: "timed out", CANCELLED: "cancelled"}


def attempt_rows(task: Task) -> list[tuple[str, str, str, str, str]]:
    """The attempts ``tasks show`` lists: (number, ended at, worker, outcome, failure), oldest first.

    Every failed attempt kept in ``Task.failures``, then the attempt that is running or that succeeded (the
    store does not keep who ran a success, so its worker is "-"). After a manual retry the numbers start again.
    """
    rows = [
        (
            str(entry.attempt),
            f"{entry.ended_at:%Y-%m-%d %H:%M:%S}",
            entry.worker_id or "-",
            _OUTCOMES.get(entry.failure.type, "failed"),
            f"{entry.failure.type}: {entry.failure.message}" if entry.failure.message else entry.failure.type,
        )
        for entry in task.failures
    ]
    if task.state is State.CLAIMED and task.claim is not None:
        rows.append((str(task.attempts), "-", task.claim.worker_id, "running", ""))
    elif task.state is State.DONE and task.result is not None:
        rows.append((str(task.attempts), f"{task.result.at:%Y-%m-%d %H:%M:%S}", "-", "done", ""))
    return rows


def _state_text(task: Task) -> Text:
    return Text(task.state.value, style=_STATE_STYLE[task.state])


def _text(value: object) -> Text:
    """A table cell holding data: shown as it is, never parsed as markup, controls escaped."""
    return Text(printable(value))


def _error_line(message: str, *suffix: str, console: Console | None = None) -> None:
    """One line on stderr: the message's own line breaks and controls are escaped, never acted on."""
    line = printable(" ".join(message.split()))
    out = console or Console(stderr=True, soft_wrap=True)
    out.print(Text.assemble(("error: ", "red"), line, *suffix), highlight=False)


def _state(value: str | None) -> State | None:
    if value is None:
        return None
    try:
        return State(value.lower())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(s.value for s in State)}") from None


def _age(seconds: float) -> str:
    """A wait, short: 42s, 5m 3s, 2h 5m, 3d 4h."""
    whole = max(0, int(seconds))
    for size, unit, smaller, small_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // smaller}{small_unit}"
    return f"{whole}s"


def _queue_json(info: QueueInfo, now: datetime) -> dict[str, Any]:
    oldest = info.oldest_ready_at
    return {
        "name": info.name,
        "paused": info.paused,
        "counts": {state.value: n for state, n in info.counts.items()},
        "oldest_ready_at": oldest.isoformat() if oldest else None,
        "oldest_ready_age": None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        "workers": info.workers,
    }


def _queue_commands(app: typer.Typer, cli: _Cli) -> None:
    queues = typer.Typer(help="Look at queues; pause and resume them.", no_args_is_help=True)
    app.add_typer(queues, name="queues")

    @queues.command("ls")
    def queues_ls(url: UrlOption = None, as_json: JsonOption = False) -> None:
        """List queues: paused or not, live tasks per state, the oldest ready task's wait, live workers."""

        async def look(store: Store) -> tuple[datetime, list[QueueInfo]]:
            infos = await store.list_queues()
            return store.now(), infos

        now, infos = cli.run(url, look, create=False)
        if as_json:
            cli.print_json([_queue_json(info, now) for info in infos])
            return
        if not infos:
            cli.err.print("no queues")
            return
        table = Table(header_style="bold")
        table.add_column("queue", overflow="fold")
        table.add_column("paused")
        for state in State:
            table.add_column(state.value, justify="right")
        table.add_column("oldest ready", justify="right")
        table.add_column("workers", justify="right")
        for info in infos:
            oldest = info.oldest_ready_at
            table.add_row(
                _text(info.name),
                Text("paused", style="yellow") if info.paused else Text("no", style="dim"),
                *(f"{info.counts.get(state, 0):,}" for state in State),
                "" if oldest is None else _age((now - oldest).total_seconds()),
                str(info.workers),
            )
        cli.out.print(table)

    def pause_or_resume(name: str, url: str | None, as_json: bool, paused: bool) -> None:
        try:
            check_queue(name)  # before opening (and maybe creating) the store
        except errors.InvalidTask as exc:
            cli.fail(exc)
        cli.run(url, lambda s: s.pause_queue(name) if paused else s.resume_queue(name))
        if as_json:
            cli.print_json({"queue": name, "paused": paused})
        elif paused:
            cli.say(f"paused {name}: no worker claims its tasks until it is resumed; running tasks finish")
        else:
            cli.say(f"resumed {name}")

    @queues.command("pause")
    def queues_pause(
        name: Annotated[str, typer.Argument(metavar="NAME")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Stop every worker claiming the queue's tasks (durable); running tasks finish."""
        pause_or_resume(name, url, as_json, True)

    @queues.command("resume")
    def queues_resume(
        name: Annotated[str, typer.Argument(metavar="NAME")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Let workers claim the queue's tasks again."""
        pause_or_resume(name, url, as_json, False)


def _next_run(at: datetime | None) -> str | None:
    # A schedule that cannot fire is parked at the latest instant the store keeps.
    if at is None or at >= limits.LATEST:
        return None
    return at.isoformat()


def _recurring_json(r: RecurringTask) -> dict[str, Any]:
    return {
        "id": r.id,
        "schedule": r.schedule,
        "next_at": _next_run(r.next_at),
        "owner": r.owner,
        "queue": r.template.queue,
        "kind": r.template.kind,
        "skip_if_outstanding": r.skip_if_outstanding,
    }


def _recurring_commands(app: typer.Typer, cli: _Cli) -> None:
    recurring = typer.Typer(help="Look at recurring schedules; remove one.", no_args_is_help=True)
    app.add_typer(recurring, name="recurring")

    @recurring.command("ls")
    def recurring_ls(url: UrlOption = None, as_json: JsonOption = False) -> None:
        """List recurring schedules: the next run, the App that owns it (none: added by hand), what it creates."""
        schedules = cli.run(url, lambda s: s.list_recurring(), create=False)
        if as_json:
            cli.print_json([_recurring_json(r) for r in schedules])
            return
        if not schedules:
            cli.err.print("no recurring schedules")
            return
        table = Table(header_style="bold")
        for column in ("id", "schedule", "next run", "owner", "queue", "kind"):
            table.add_column(column, overflow="fold")
        for r in schedules:
            table.add_row(
                _text(r.id),
                _text(r.schedule),
                _next_run(r.next_at) or "never (parked)",
                _text(r.owner) if r.owner is not None else Text("-", style="dim"),
                _text(r.template.queue),
                _text(r.template.kind),
            )
        cli.out.print(table)

    @recurring.command("rm")
    def recurring_rm(
        recurring_id: Annotated[str, typer.Argument(metavar="ID")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Remove a recurring schedule (an App's worker adds it back on start while the App declares it)."""

        async def remove(store: Store) -> RecurringTask:
            found = [r for r in await store.list_recurring() if r.id == recurring_id]
            if not found or not await store.remove_recurring(recurring_id):
                raise errors.NotFound(recurring_id, "recurring schedule")
            return found[0]

        removed = cli.run(url, remove, create=False)
        if as_json:
            cli.print_json(_recurring_json(removed))
        elif removed.owner is not None:
            cli.say(
                f"removed recurring schedule {removed.id} of App {removed.owner}: "
                "its next worker adds it back if the App still declares it"
            )
        else:
            cli.say(f"removed recurring schedule {removed.id}")


def _limit_json(limit: Limit) -> dict[str, Any]:
    return {"key": limit.key, "concurrency": limit.concurrency, "rate": limit.rate, "per": limit.per}


def _limit_commands(app: typer.Typer, cli: _Cli) -> None:
    group = typer.Typer(help="Per-key limits on the tasks of a concurrency key.", no_args_is_help=True)
    app.add_typer(group, name="limits")

    @group.command("ls")
    def limits_ls(url: UrlOption = None, as_json: JsonOption = False) -> None:
        """List the keys' limits."""
        found = cli.run(url, lambda s: s.list_limits(), create=False)
        if as_json:
            cli.print_json([_limit_json(limit) for limit in found])
            return
        if not found:
            cli.err.print("no limits")
            return
        table = Table(header_style="bold")
        table.add_column("key", overflow="fold")
        table.add_column("concurrency", justify="right")
        table.add_column("rate", justify="right")
        for limit in found:
            rate = "-" if limit.rate is None else f"{limit.rate} per {limit.per:g}s"
            table.add_row(_text(limit.key), "-" if limit.concurrency is None else str(limit.concurrency), rate)
        cli.out.print(table)

    @group.command("set")
    def limits_set(
        key: Annotated[str, typer.Argument(metavar="KEY")],
        concurrency: Annotated[
            int | None, typer.Option("--concurrency", help="At most this many of the key's tasks running at once.")
        ] = None,
        rate: Annotated[
            int | None, typer.Option("--rate", help="At most this many claims of the key per --per.")
        ] = None,
        per: Annotated[str | None, typer.Option("--per", help="The rate's period, e.g. 1s, 1m [default: 1s].")] = None,
        url: UrlOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Limit the tasks of a concurrency key (replaces the key's limit; 0 holds them all)."""
        if per is not None and rate is None:
            raise typer.BadParameter("--per is the period of --rate: give --rate too")
        period = parse_duration(per) if per is not None else timedelta(seconds=1)
        try:
            Limit(key, concurrency, rate, period.total_seconds())  # refused before the store opens
        except errors.InvalidTask as exc:
            cli.fail(exc)
        limit = cli.run(url, lambda s: s.set_limit(key, concurrency, rate, period))
        if as_json:
            cli.print_json(_limit_json(limit))
        else:
            cli.say(f"limited {key}: {_limit_words(limit)}")

    @group.command("clear")
    def limits_clear(
        key: Annotated[str, typer.Argument(metavar="KEY")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Remove a key's limit: its tasks are unlimited again."""

        async def clear(store: Store) -> None:
            if not await store.clear_limit(key):
                raise errors.NotFound(key, "limit on key")

        cli.run(url, clear, create=False)
        if as_json:
            cli.print_json({"key": key, "cleared": True})
        else:
            cli.say(f"cleared the limit on {key}")


def _limit_words(limit: Limit) -> str:
    parts = []
    if limit.concurrency is not None:
        parts.append(f"at most {limit.concurrency} running at once")
    if limit.rate is not None:
        parts.append(f"at most {limit.rate} started per {limit.per:g}s")
    return ", ".join(parts)


def build_app() -> typer.Typer:
    cli = _Cli()
    app = typer.Typer(
        name="taskstore",
        help="A durable task store and queue.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    tasks = typer.Typer(help="Look at tasks.", no_args_is_help=True)
    app.add_typer(tasks, name="tasks")

    @tasks.command("ls")
    def tasks_ls(
        url: UrlOption = None,
        state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
        queue: Annotated[str | None, typer.Option(help="Only tasks of this queue.")] = None,
        kind: Annotated[str | None, typer.Option(help="Only tasks of this kind.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many tasks.")] = 50,
        newest: Annotated[bool, typer.Option("--newest", help="Newest first.")] = False,
        archived: Annotated[bool, typer.Option("--archived", help="List archived tasks.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """List tasks, oldest first."""
        wanted = _state(state)
        page = cli.run(
            url,
            lambda s: s.list(state=wanted, queue=queue, limit=limit, descending=newest, archived=archived, kind=kind),
            create=False,
        )
        if as_json:
            cli.print_json({"items": [task_json(t) for t in page.items], "next_cursor": page.next_cursor})
        elif not page.items:
            cli.err.print("no tasks match")
        else:
            cli.tasks_table(list(page.items))

    @tasks.command("show")
    def tasks_show(
        task_id: Annotated[str, typer.Argument(metavar="ID")],
        url: UrlOption = None,
        archived: Annotated[bool, typer.Option("--archived", help="Look in the archive.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Show one task in full."""
        task = cli.run(url, lambda s: s.get_archived(task_id) if archived else s.get(task_id), create=False)
        if as_json:
            cli.print_json(task_json(task))
        else:
            cli.task_detail(task)

    @tasks.command("why")
    def tasks_why(
        task_id: Annotated[str, typer.Argument(metavar="ID")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Say every gate holding a task back (its run_at, a paused queue, a key's limit, no worker, ...)."""
        reasons = cli.run(url, lambda s: s.why(task_id), create=False)
        if as_json:
            cli.print_json(reasons)
        elif not reasons:
            cli.say("nothing holds it back: a worker will claim it")
        else:
            for reason in reasons:
                cli.say(reason)

    @tasks.command("watch")
    def tasks_watch(
        task_id: Annotated[str, typer.Argument(metavar="ID")],
        url: UrlOption = None,
        wait: Annotated[bool, typer.Option("--wait", help="If there is no such task yet, wait for it.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Print a task's status now and at every change, until it finishes."""

        async def follow(store: Store) -> None:
            # An unknown id is far more often a typo than a task yet to come: waiting is asked for.
            if not wait and await store.get_status(task_id) is None:
                raise errors.NotFound(task_id)
            async for status in store.watch(task_id):
                if as_json:
                    sys.stdout.write(json_text(status.to_json(), indent=None) + "\n")
                    sys.stdout.flush()
                else:
                    when = f"{status.updated_at:%H:%M:%S}" if status.updated_at else ""
                    detail = ""
                    if status.error:
                        detail = f"  {status.error.get('type', '')}: {status.error.get('message', '')}"
                    elif status.payload is not None:
                        detail = f"  {json.dumps(status.payload, ensure_ascii=False)[:200]}"
                    cli.say(f"{when} {status.state.value} (attempt {status.attempt}){detail}")

        cli.run(url, follow, create=False)

    @tasks.command("count")
    def tasks_count(
        url: UrlOption = None,
        state: Annotated[str | None, typer.Option(help="Count only this state.")] = None,
        queue: Annotated[str | None, typer.Option(help="Count only this queue.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Count tasks, by state (or only one state)."""
        wanted = _state(state)
        states = [wanted] if wanted is not None else list(State)

        async def counts(store: Store) -> dict[str, int]:
            return {s.value: await store.count(state=s, queue=queue) for s in states}

        result = cli.run(url, counts, create=False)
        if as_json:
            cli.print_json(result if wanted is None else {"count": result[wanted.value]})
            return
        if wanted is not None:
            cli.out.print(result[wanted.value])
            return
        table = Table(header_style="bold")
        table.add_column("state")
        table.add_column("tasks", justify="right")
        for name, n in result.items():
            table.add_row(name, f"{n:,}")
        table.add_row("[bold]total[/]", f"[bold]{sum(result.values()):,}[/]")
        cli.out.print(table)

    _queue_commands(app, cli)
    _recurring_commands(app, cli)
    _limit_commands(app, cli)

    @app.command("enqueue")
    def enqueue(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        kind: Annotated[str, typer.Argument(help="Task kind (the handler's name).")],
        args: Annotated[str, typer.Option("--args", help="The payload as JSON.")] = "null",
        task_id: Annotated[str | None, typer.Option("--id", help="Idempotency key.")] = None,
        priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
        delay: Annotated[str | None, typer.Option(help="Run no sooner than this from now (e.g. 30s).")] = None,
        max_attempts: Annotated[int | None, typer.Option(min=1, help="Executions allowed.")] = None,
        unique_key: Annotated[
            str | None, typer.Option("--unique-key", help="While a live task of the queue holds this key, get it back.")
        ] = None,
        unique_for: Annotated[
            str | None, typer.Option("--unique-for", help="The key is held at most this long (e.g. 1h).")
        ] = None,
        concurrency_key: Annotated[
            str | None, typer.Option("--concurrency-key", help="Counted against this key's limit (limits set).")
        ] = None,
        expires_in: Annotated[
            str | None, typer.Option("--expires-in", help="Never start later than this from now (e.g. 90, 10m).")
        ] = None,
        url: UrlOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Add one task to a queue (with --unique-key: or get back the live task holding the key)."""
        try:
            payload = json.loads(args)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--args is not valid JSON: {exc}") from None
        except RecursionError:
            raise typer.BadParameter("--args is nested too deeply") from None
        wait = parse_duration(delay) if delay is not None else None
        hold = parse_duration(unique_for) if unique_for is not None else None
        lifetime = parse_duration(expires_in) if expires_in is not None else None
        # Our own id tells a new task from the live holder of the unique key that came back instead.
        new_id = task_id if task_id is not None or unique_key is None else _ids.task_id()

        async def create(store: Store) -> Task:
            now = store.now()
            return await store.create(
                NewTask(
                    queue,
                    kind,
                    payload,
                    id=new_id,
                    priority=priority,
                    run_at=now + wait if wait is not None else None,
                    max_attempts=max_attempts,
                    unique_key=unique_key,
                    unique_for=hold,
                    concurrency_key=concurrency_key,
                    expires_at=now + lifetime if lifetime is not None else None,
                )
            )

        try:
            task = cli.run(url, create)
        except errors.InvalidTask as exc:  # raised while building NewTask, before the store opens
            cli.fail(exc)
        if as_json:
            cli.print_json(task_json(task))
        elif new_id is not None and task.id != new_id:
            cli.say(f"not enqueued: {task.id} on {task.queue} ({task.kind}) holds unique key {unique_key}")
        else:
            cli.say(f"enqueued {task.id} on {task.queue} ({task.kind})")

    @app.command("cancel")
    def cancel(
        task_id: Annotated[str, typer.Argument(metavar="ID")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Cancel a task (a running task is asked to stop at its next report-in)."""
        task = cli.run(url, lambda s: s.cancel(task_id))
        if as_json:
            cli.print_json(task_json(task))
        elif task.state is State.CLAIMED:
            cli.say(f"{task.id} is running: cancel requested")
        else:
            cli.say(f"{task.id} is {task.state.value}")

    @app.command("retry")
    def retry(
        task_id: Annotated[str, typer.Argument(metavar="ID")], url: UrlOption = None, as_json: JsonOption = False
    ) -> None:
        """Run a dead or cancelled task again, with a fresh attempt budget."""
        task = cli.run(url, lambda s: s.retry(task_id))
        if as_json:
            cli.print_json(task_json(task))
        else:
            cli.say(f"{task.id} is {task.state.value}")

    @app.command("reap")
    def reap(url: UrlOption = None, as_json: JsonOption = False) -> None:
        """Fail every claim whose lease has timed out."""
        n = cli.run(url, lambda s: s.reap())
        if as_json:
            cli.print_json({"reaped": n})
        else:
            cli.out.print(f"reaped {n} timed-out task{'s' if n != 1 else ''}")

    @app.command("archive")
    def archive(
        older_than: Annotated[str, typer.Option("--older-than", help="Finished at least this long ago.")] = "7d",
        url: UrlOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Move finished tasks (done, dead, cancelled) into the archive."""
        age = parse_duration(older_than)
        n = cli.run(url, lambda s: s.archive(older_than=age))
        if as_json:
            cli.print_json({"archived": n})
        else:
            cli.say(f"archived {n} task{'s' if n != 1 else ''} finished more than {older_than} ago")

    @app.command("worker")
    def worker(
        target: Annotated[str, typer.Argument(metavar="MODULE:APP", help="Where the App lives, e.g. myproj.tasks:app")],
        queue: Annotated[
            list[str] | None, typer.Option("--queue", "-q", help="A queue to work (repeatable) [default: the App's]")
        ] = None,
        concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Tasks run at once.")] = 10,
        prefetch: Annotated[
            int, typer.Option(min=0, help="Claimed tasks held ready beyond the running ones (saves a round trip).")
        ] = 0,
        url: WorkerUrlOption = None,
        grace: Annotated[str, typer.Option(help="On SIGTERM/SIGINT, how long running tasks may finish.")] = "30s",
        worker_id: Annotated[str | None, typer.Option("--worker-id", help="[default: host-pid-random]")] = None,
        archive_after: Annotated[str, typer.Option(help="Archive finished tasks this old.")] = "7d",
        reap_every: Annotated[str, typer.Option(help="How often to look for timed-out leases.")] = "5s",
        maintenance: Annotated[bool, typer.Option(help="Run the reaper, archiver and scheduler here.")] = True,
        log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
        metrics_port: Annotated[
            int | None,
            typer.Option(
                min=0,
                max=65535,
                help="Serve this worker's Prometheus counters and histograms at http://HOST:PORT/metrics "
                "(0: any free port, logged). The store-wide gauges (tasks by state, oldest ready age, live "
                "workers, paused queues) are on `taskstore serve`'s /metrics, not on every worker's. Needs "
                "taskstore[web].",
            ),
        ] = None,
        metrics_host: Annotated[str, typer.Option(help="Address the --metrics-port server listens on.")] = "127.0.0.1",
        loop: Annotated[
            str,
            typer.Option(
                help="Event loop: auto (uvloop when installed, else asyncio's), asyncio, or uvloop.",
            ),
        ] = "auto",
    ) -> None:
        """Run a worker for an App until SIGTERM or SIGINT (a second signal stops at once)."""
        from .maintenance import MaintenanceConfig
        from .worker import Worker

        level = getattr(logging, log_level.upper(), None)
        if not isinstance(level, int):
            raise typer.BadParameter(f"{log_level!r} is not a log level")
        handler = logging.StreamHandler()
        handler.setFormatter(_LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
        try:
            exporter = None if metrics_port is None else _worker_metrics(metrics_host, metrics_port)
        except errors.TaskstoreError as exc:
            cli.fail(exc)
        the_app = load_app(target)
        the_app.url, warning = worker_url(url, the_app.configured_url(), os.environ.get("TASKSTORE_URL"))
        if warning is not None:
            logging.getLogger("taskstore.worker").warning("%s", warning)
        try:
            config = MaintenanceConfig(
                archive_after=parse_duration(archive_after).total_seconds(),
                reap_every=parse_duration(reap_every).total_seconds(),
            )
            w = Worker(
                the_app,
                queue or None,
                concurrency,
                prefetch=prefetch,
                worker_id=worker_id,
                grace=parse_duration(grace).total_seconds(),
                maintenance=maintenance,
                maintenance_config=config,
                observers=() if exporter is None else (exporter.metrics,),
            )
            _loops.run(_run_worker(w), loop)
        except errors.TaskstoreError as exc:
            cli.fail(exc)
        finally:
            if exporter is not None:
                exporter.close()
        raise typer.Exit(1 if w.forced else 0)

    @app.command("serve")
    def serve(
        url: UrlOption = None,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
        token: Annotated[
            list[str] | None,
            typer.Option(
                "--token",
                help="An API token, ROLE:SECRET (roles read, worker, admin) or SECRET for admin; repeatable "
                "[default: $TASKSTORE_API_TOKENS]. Without any, only loopback clients are served.",
            ),
        ] = None,
        max_body: Annotated[
            str, typer.Option(help="Largest request body accepted (413 past it): 10MB, 512KB.")
        ] = "10MB",
        log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
        workers: Annotated[
            int,
            typer.Option(min=1, max=64, help="Server processes sharing the port, each with its own store connections."),
        ] = 1,
    ) -> None:
        """Serve the HTTP API (and /metrics, events) over a store until SIGTERM or SIGINT."""
        from .serve import run_server  # late: the web extra is optional

        try:
            run_server(
                url or default_url(), host=host, port=port, tokens=token, max_body=parse_size(max_body),
                log_level=log_level, workers=workers,
            )  # fmt: skip
        except errors.TaskstoreError as exc:
            cli.fail(exc)

    @app.command("migrate")
    def migrate(url: UrlOption = None) -> None:
        """Create or upgrade the store's schema (opening a store does it too; this does only that)."""

        async def upgrade(store: Store) -> str:
            return f"schema of {redact(store.url)} is up to date"

        cli.say(cli.run(url, upgrade))

    @app.command("doctor")
    def doctor(url: UrlOption = None, as_json: JsonOption = False) -> None:
        """Check the store's health: sizes, bloat, dead tuples, vacuum, the xmin horizon, NOTIFY (exit 1 if bad)."""
        from ._doctor import render
        from .health import Level

        report = cli.run(url, lambda s: s.health(), create=False)
        if as_json:
            cli.print_json(report.to_json())
        else:
            render(report, cli.out)
        raise typer.Exit(1 if report.level is Level.BAD else 0)

    @app.command("workers")
    def workers(url: UrlOption = None, as_json: JsonOption = False) -> None:
        """List live workers (those that wrote a heartbeat within the last minute)."""
        beats = cli.run(url, lambda s: s.list_worker_heartbeats(), create=False)
        if as_json:
            cli.print_json([_heartbeat_json(b) for b in beats])
            return
        if not beats:
            cli.err.print("no live workers")
            return
        table = Table(header_style="bold")
        for column in ("worker", "queues", "in flight", "host", "pid", "started", "last seen"):
            table.add_column(column, no_wrap=column != "queues")
        for b in beats:
            table.add_row(
                _text(b.worker_id),
                _text(", ".join(b.queues)),
                str(b.inflight),
                _text(b.host),
                str(b.pid),
                f"{b.started_at:%Y-%m-%d %H:%M:%S}" if b.started_at else "",
                f"{b.timestamp:%H:%M:%S}" if b.timestamp else "",
            )
        cli.out.print(table)

    @app.command("demo")
    def demo(
        url: UrlOption = None,
        tasks_: Annotated[int, typer.Option("--tasks", min=1, max=100_000, help="How many tasks to run.")] = 3000,
        workers_: Annotated[int, typer.Option("--workers", min=1, max=16, help="Workers in the pool.")] = 2,
        concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Tasks each worker runs at once.")] = 32,
    ) -> None:
        """Enqueue a few thousand example tasks and run them through a worker pool, live."""
        from .demo import run_demo

        try:
            asyncio.run(run_demo(url or default_url(), tasks_, workers_, concurrency, console=cli.out))
        except errors.TaskstoreError as exc:
            cli.fail(exc)

    return app


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. A usage error is one line on stderr (exit 2); a store error too (exit 1)."""
    command = typer.main.get_command(build_app())
    try:
        code = command.main(args=argv, prog_name="taskstore", standalone_mode=False)
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 130))
    except errors.TaskstoreError as exc:
        _error_line(str(exc))
        sys.exit(1)
    except OverflowError as exc:
        # Only a user's number reaches this far (a duration of millennia, a date past year 9999).
        _error_line(f"a value is out of range: {exc}")
        sys.exit(2)
    except Exception as exc:
        # Typer's parser errors (click's UsageError family) carry format_message and exit_code;
        # typer now vendors click, so they are recognised by shape rather than by import.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message() + "\n")
        else:
            ctx = getattr(exc, "ctx", None)
            where = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
            _error_line(str(exc.format_message()), where)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
