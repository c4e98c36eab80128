"""``taskstore demo``: a few thousand example tasks through a worker pool, with live progress.

Some tasks succeed at once, some fail and retry, a few are delayed, a few go dead; all of it is
written to the store (the embedded SQLite file by default), so the commands printed at the end
show what happened.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ._connect import default_url, redact
from ._render import printable
from .client import App
from .context import current_task
from .model import NewTask, State
from .retry import BinaryExponential
from .store import Store
from .worker import Worker

QUICK_RETRY = BinaryExponential(base=0.2, cap=1.0)


class PaymentDeclined(Exception):
    """The demo's always-failing task raises this."""


class UpstreamBusy(Exception):
    """The demo's flaky task raises this on early attempts."""


def build_app(url: str) -> App:
    app = App(url)

    @app.task(queue="demo", kind="demo.thumbnail", timeout=5)
    async def thumbnail(image: int, width: int = 128) -> dict[str, int]:
        await asyncio.sleep(random.uniform(0.001, 0.008))
        return {"image": image, "width": width}

    @app.task(queue="demo", kind="demo.sync_invoice", timeout=5)
    def sync_invoice(order: int) -> str:
        time.sleep(0.002)  # a plain blocking function: the worker runs it in its thread pool
        return f"INV-{order:06d}"

    @app.task(queue="demo", kind="demo.flaky_fetch", max_attempts=4, retry=QUICK_RETRY)
    async def flaky_fetch(url_id: int) -> int:
        if current_task().attempts < 3 and random.random() < 0.6:
            raise UpstreamBusy(f"upstream busy for item {url_id}, try again")
        return url_id

    @app.task(queue="demo", kind="demo.charge_card", max_attempts=3, retry=QUICK_RETRY)
    async def charge_card(customer: int) -> None:
        raise PaymentDeclined(f"card of customer {customer} declined")

    return app


def plan(app: App, queue: str, total: int, rng: random.Random) -> list[NewTask]:
    """The demo's mix: mostly quick successes, a fifth flaky, some delayed, about 1 % doomed."""
    t = app.tasks
    news: list[NewTask] = []
    for i in range(total):
        roll = rng.random()
        delay = rng.uniform(1.0, 4.0) if rng.random() < 0.05 else None
        if roll < 0.01:
            news.append(t["demo.charge_card"].options(queue=queue, delay=delay).new_task(i))
        elif roll < 0.21:
            news.append(t["demo.flaky_fetch"].options(queue=queue, delay=delay).new_task(i))
        elif roll < 0.36:
            news.append(t["demo.sync_invoice"].options(queue=queue, delay=delay).new_task(i))
        else:
            news.append(t["demo.thumbnail"].options(queue=queue, delay=delay).new_task(i, width=rng.choice([64, 256])))
    return news


@dataclass
class Snapshot:
    counts: dict[State, int]
    elapsed: float

    @property
    def finished(self) -> int:
        return self.counts[State.DONE] + self.counts[State.DEAD] + self.counts[State.CANCELLED]


async def snapshot(store: Store, queue: str, start: float) -> Snapshot:
    counts = {state: await store.count(state=state, queue=queue) for state in State}
    return Snapshot(counts, time.monotonic() - start)


def render(snap: Snapshot, total: int, progress: Progress) -> Group:
    c = snap.counts
    rate = c[State.DONE] / snap.elapsed if snap.elapsed > 0 else 0.0
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(justify="right", style="bold")
    table.add_column()
    table.add_row(f"[green]{c[State.DONE]:,}[/]", "done")
    table.add_row(f"[yellow]{c[State.CLAIMED]:,}[/]", "running")
    table.add_row(f"[magenta]{c[State.FAILED]:,}[/]", "retrying (failed, waiting for their backoff)")
    table.add_row(f"[cyan]{c[State.QUEUED]:,}[/]", "queued (some delayed on purpose)")
    table.add_row(f"[red]{c[State.DEAD]:,}[/]", "dead (out of attempts)")
    table.add_row(f"{rate:,.0f}", "tasks/s done")
    progress.update(progress.task_ids[0], completed=snap.finished, total=total)
    return Group(progress, table)


async def run_demo(
    url: str, total: int = 3000, workers: int = 2, concurrency: int = 32, console: Console | None = None
) -> Snapshot:
    console = console or Console()
    logging.getLogger("taskstore").setLevel(logging.ERROR)  # the live view is the report
    app = build_app(url)
    queue = f"demo-{time.strftime('%H%M%S')}-{random.randrange(16**3):03x}"
    store = await app.store()
    news = plan(app, queue, total, random.Random())
    console.print(
        Text.assemble(
            ("taskstore demo", "bold"),
            " on ",
            (printable(redact(url)), "cyan"),
            f": enqueuing {total:,} tasks on queue ",
            (queue, "cyan"),
        )
    )
    t0 = time.perf_counter()
    await store.create_many(news)
    console.print(
        f"enqueued {total:,} tasks in {time.perf_counter() - t0:.2f}s; starting {workers} workers "
        f"x {concurrency} concurrent tasks"
    )
    progress = Progress(
        TextColumn("[bold]progress"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    )
    progress.add_task("tasks", total=total)
    pool = [Worker(app, [queue], concurrency, worker_id=f"demo-worker-{i + 1}", grace=5) for i in range(workers)]
    start = time.monotonic()
    for w in pool:
        await w.start()
    try:
        snap = await snapshot(store, queue, start)
        with Live(render(snap, total, progress), console=console, refresh_per_second=8, transient=False) as live:
            while snap.finished < total and snap.elapsed < 55:
                await asyncio.sleep(0.2)
                snap = await snapshot(store, queue, start)
                live.update(render(snap, total, progress))
    finally:
        for w in pool:
            await w.stop()
    summarize(console, snap, total, queue, url, pool)
    await app.aclose()
    return snap


def summarize(console: Console, snap: Snapshot, total: int, queue: str, url: str, pool: list[Worker]) -> None:
    c = snap.counts
    retried = sum(w.stats.failed for w in pool) - c[State.DEAD]  # a dead task's last failure is not retried
    console.print()
    console.print(
        f"[bold]{snap.finished:,} of {total:,} tasks finished in {snap.elapsed:.1f}s[/]: "
        f"[green]{c[State.DONE]:,} done[/], [red]{c[State.DEAD]:,} dead[/]; "
        f"{max(retried, 0):,} failed attempts were retried."
    )
    # The hints are printed, so they name the URL without its password (and not at all when it is the default,
    # $TASKSTORE_URL included); say where the password goes.
    flag = "" if url == default_url() else f" --url '{printable(redact(url))}'"
    hidden = bool(flag) and redact(url) != url
    console.print("\nLook further:" + (" (put your password where the URL shows ***)" if hidden else ""))
    for command in (
        f"taskstore tasks count --queue {queue}{flag}",
        f"taskstore tasks ls --state dead --queue {queue}{flag}",
        f"taskstore tasks ls --state done --queue {queue} --limit 5{flag}",
        f"taskstore tasks show ID{flag}            (an id from the lists above)",
        f"taskstore retry ID{flag}                 (run a dead task again)",
        f"taskstore archive --older-than 0s{flag}  (move finished tasks to the archive)",
    ):
        console.print(Text(f"  {command}", style="cyan"), highlight=False)
