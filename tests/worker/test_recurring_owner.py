"""Recurring schedules declared by an App are the App's: a new version of its code drops the ones it no
longer declares when its first worker starts; schedules added by hand and other Apps' stay."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from taskstore import App, NewTask, RecurringTask, Store, Worker
from taskstore.errors import ConfigError


@pytest_asyncio.fixture
async def store(url: str) -> AsyncIterator[Store]:
    """One store every App of a test shares (``memory://`` would give each App its own)."""
    the_app = App(url)
    yield await the_app.store()
    await the_app.aclose()


def app_version(store: Store, name: str | None, declared: list[str]) -> App:
    app = App(store.url, name=name) if name is not None else App(store.url)
    app._store = store  # the shared store (the App does not close it)

    @app.task(queue="cron")
    async def tick() -> None: ...

    for recurring_id in declared:
        app.recurring(recurring_id, every="1h", task=tick)
    return app


async def start_a_worker(app: App) -> None:
    async with Worker(app, maintenance=False):
        pass


async def owners(store: Store) -> dict[str, str | None]:
    return {r.id: r.owner for r in await store.list_recurring()}


@pytest.mark.asyncio
async def test_a_new_version_of_an_app_removes_the_schedules_it_no_longer_declares(store: Store) -> None:
    await start_a_worker(app_version(store, "billing", ["a", "b"]))
    await start_a_worker(app_version(store, "reports", ["d"]))
    await store.add_recurring(RecurringTask("c", "@every 1h", NewTask("cron", "by-hand")))
    assert await owners(store) == {"a": "billing", "b": "billing", "c": None, "d": "reports"}

    await start_a_worker(app_version(store, "billing", ["a"]))

    assert await owners(store) == {"a": "billing", "c": None, "d": "reports"}


@pytest.mark.asyncio
async def test_an_app_that_declares_nothing_any_more_removes_all_of_its_schedules(store: Store) -> None:
    await start_a_worker(app_version(store, "billing", ["a", "b"]))
    await start_a_worker(app_version(store, "other", []))
    assert set(await owners(store)) == {"a", "b"}
    assert await app_version(store, "billing", []).store_recurring(store) == ["a", "b"]
    assert await owners(store) == {}


@pytest.mark.asyncio
async def test_an_app_adopts_a_schedule_of_its_id_added_by_hand(store: Store) -> None:
    await store.add_recurring(RecurringTask("a", "@every 1h", NewTask("cron", "by-hand")))
    await start_a_worker(app_version(store, "billing", ["a"]))
    assert await owners(store) == {"a": "billing"}


@pytest.mark.asyncio
async def test_the_default_name_is_the_module_creating_the_app(store: Store) -> None:
    assert App("memory://").name == __name__
    await start_a_worker(app_version(store, None, ["a"]))
    assert await owners(store) == {"a": __name__}


def test_the_default_name_of_an_app_in_a_script_is_its_file_name(tmp_path: Path) -> None:
    script = tmp_path / "nightly.py"
    script.write_text("import taskstore\nprint(taskstore.App('memory://').name)\n")
    by_file = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True)
    as_module = subprocess.run(
        [sys.executable, "-m", "nightly"], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    )
    assert by_file.stdout.strip() == as_module.stdout.strip() == "nightly"


@pytest.mark.parametrize("name", ["", "x" * 1000, "a\x00b"])
def test_a_bad_app_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="App name"):
        App("memory://", name=name)
