"""taskstore.contrib.django in a real Django project (tests/integration/django_app), on PostgreSQL and SQLite.

Django runs in subprocesses only (its settings are per process): ``drive`` posts to the project's views with
Django's test client, and the worker is ``taskstore worker`` or ``manage.py taskstore_worker`` with
``DJANGO_SETTINGS_MODULE`` set. The store lives in the project's database (``TASKSTORE_DATABASE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import State, Task, errors

pytest.importorskip("django")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.django_app.shop.tasks:app"
WAIT = 30.0  # seconds any one task may take to finish before the test fails


class Project:
    """The test project over one database: its environment, its store URL, and a way to read its orders."""

    def __init__(self, database: str, store_url: str) -> None:
        self.database = database
        self.store_url = store_url
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.integration.django_app.settings",
            "TEST_DJANGO_DATABASE": database,
            "PYTHONPATH": str(ROOT),
        }
        self.env.pop("TASKSTORE_URL", None)

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def post(self, *forms: dict[str, str]) -> list[dict[str, Any]]:
        out = self.run("-m", "tests.integration.django_app.drive", json.dumps(list(forms)))
        return list(json.loads(out.strip().splitlines()[-1]))

    def order(self, order_id: int) -> tuple[int, int | None]:
        query = "SELECT processed, backend_pid FROM shop_order WHERE id = %s"
        if self.database.startswith("postgresql://"):
            with psycopg.connect(self.database) as conn:
                row = conn.execute(query, (order_id,)).fetchone()
        else:
            with contextlib.closing(sqlite3.connect(self.database)) as conn:
                row = conn.execute(query.replace("%s", "?"), (order_id,)).fetchone()
        assert row is not None, f"no order {order_id}"
        return int(row[0]), row[1]

    def orders(self) -> int:
        query = "SELECT count(*) FROM shop_order"
        if self.database.startswith("postgresql://"):
            with psycopg.connect(self.database) as conn:
                row = conn.execute(query).fetchone()
        else:
            with contextlib.closing(sqlite3.connect(self.database)) as conn:
                row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    @contextlib.contextmanager
    def worker(self, *command: str, **env: str) -> Iterator[subprocess.Popen[str]]:
        proc = subprocess.Popen(
            [sys.executable, *command], cwd=ROOT, env={**self.env, **env}, stderr=subprocess.PIPE, text=True
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            sys.stderr.write(err)  # shown by pytest when the test fails

    def finished(self, task_id: str) -> Task:
        """The task once it is done, dead or cancelled, or failed (an attempt that will be retried)."""

        async def wait() -> Task:
            async with taskstore.open(self.store_url) as store:
                deadline = time.monotonic() + WAIT
                while (task := await store.get(task_id)).state not in {
                    State.DONE,
                    State.DEAD,
                    State.CANCELLED,
                    State.FAILED,
                }:
                    assert time.monotonic() < deadline, f"task {task_id} stayed {task.state}"
                    await asyncio.sleep(0.05)
                return task

        return asyncio.run(wait())

    def exists(self, task_id: str) -> bool:
        async def look() -> bool:
            async with taskstore.open(self.store_url) as store:
                try:
                    await store.get(task_id)
                except errors.NotFound:
                    return False
                return True

        return asyncio.run(look())


@pytest.fixture(params=["sqlite", "postgres"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The project migrated into a fresh database: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        path = tmp_path / "django.sqlite3"
        found = Project(str(path), f"sqlite:///{path}")
        found.run("-m", "django", "migrate", "-v", "0")
        yield found
        return
    server = request.getfixturevalue("postgres_db")
    name = f"dj_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        found = Project(database, database)  # the store: schema "taskstore" of the project's database
        found.run("-m", "django", "migrate", "-v", "0")
        yield found
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _ids(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_an_enqueue_joining_the_views_transaction_runs_once_after_commit_and_never_exists_after_rollback(
    project: Project,
) -> None:
    kept, dropped = _ids("kept"), _ids("dropped")
    with project.worker("-m", "taskstore", "worker", APP, "--concurrency", "2", "--log-level", "warning"):
        rolled_back, committed = project.post(
            {"mode": "conn", "task": dropped, "fail": "1"}, {"mode": "conn", "task": kept}
        )
        assert rolled_back["status"] == 500
        assert committed["status"] == 200
        assert committed["body"]["task"] == kept  # conn= returns the handle at once
        task = project.finished(kept)
        assert task.state is State.DONE
        assert task.attempts == 1
        assert project.order(committed["body"]["order"])[0] == 1
    assert not project.exists(dropped)  # it was inserted in the transaction that rolled back
    assert project.orders() == 1


def test_enqueue_on_commit_runs_once_after_commit_and_never_after_rollback(project: Project, tmp_path: Path) -> None:
    kept, dropped = _ids("kept"), _ids("dropped")
    # $TASKSTORE_URL elsewhere: the worker still works the store the settings name, as the web process does.
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with project.worker(
        "-m", "taskstore", "worker", APP, "--concurrency", "2", "--log-level", "warning", TASKSTORE_URL=elsewhere
    ):
        rolled_back, committed = project.post(
            {"mode": "on_commit", "task": dropped, "fail": "1"}, {"mode": "on_commit", "task": kept}
        )
        assert rolled_back["status"] == 500
        assert committed["status"] == 200
        task = project.finished(kept)
        assert task.state is State.DONE
        assert task.attempts == 1
        assert project.order(committed["body"]["order"])[0] == 1  # processed once
    assert not project.exists(dropped)
    assert project.orders() == 1


def test_async_handlers_reach_the_database_through_the_management_command(project: Project) -> None:
    task_id = _ids("async")
    with project.worker("-m", "django", "taskstore_worker", "--queue", "shop", "-c", "1", "--log-level", "warning"):
        (response,) = project.post({"mode": "on_commit", "task": task_id, "async": "1"})
        task = project.finished(task_id)
        assert task.state is State.DONE, task.result
        assert project.order(response["body"]["order"])[0] == 1


@pytest.mark.parametrize("handler", ["sync", "async"])
def test_a_dropped_connection_in_the_worker_does_not_fail_the_next_task(project: Project, handler: str) -> None:
    if not project.database.startswith("postgresql://"):
        pytest.skip("a server-side disconnect needs PostgreSQL")
    first, second = _ids("first"), _ids("second")
    asynchronous = "1" if handler == "async" else "0"
    # One at a time: both tasks run on the thread that keeps the first one's Django connection open
    # (CONN_MAX_AGE=None): a sync handler's thread, or the one thread of async handlers' sync_to_async calls.
    with project.worker("-m", "taskstore", "worker", APP, "--concurrency", "1", "--log-level", "warning"):
        (one,) = project.post({"mode": "on_commit", "task": first, "async": asynchronous})
        assert project.finished(first).state is State.DONE
        _, pid = project.order(one["body"]["order"])
        assert pid is not None
        with psycopg.connect(project.database, autocommit=True) as conn:
            row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert row == (True,)  # the worker's connection was alive, and is gone now
        (two,) = project.post({"mode": "on_commit", "task": second, "async": asynchronous})
        task = project.finished(second)
        assert task.state is State.DONE, task.result
        assert task.attempts == 1
        processed, new_pid = project.order(two["body"]["order"])
        assert processed == 1
        assert new_pid != pid


def test_the_worker_says_in_one_line_when_the_django_settings_cannot_be_loaded(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "no_such_project.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "taskstore", "worker", APP],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: could not set Django up with DJANGO_SETTINGS_MODULE=no_such_project.settings: "
        "No module named 'no_such_project'"
    ]


def test_the_worker_sets_django_up_and_recycles_connections_for_a_plain_app_too(tmp_path: Path) -> None:
    (tmp_path / "plain_tasks.py").write_text(
        "import taskstore\n"
        "from django.apps import apps\n"
        "assert apps.ready  # Django was set up before this module was imported\n"
        "app = taskstore.App('memory://')\n"
    )
    script = (
        "from taskstore.cli import load_app\n"
        "app = load_app('plain_tasks:app')\n"
        "print(len(app.thread_contexts), len(app.middlewares))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.integration.django_app.settings", "PYTHONPATH": str(ROOT)}
    env["TEST_DJANGO_DATABASE"] = str(tmp_path / "unused.sqlite3")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
