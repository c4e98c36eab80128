"""The pytest plugin's fixtures (taskstore.testing.plugin), run in a pytest of their own by pytester."""

from __future__ import annotations

import pytest

TASKS = """
import taskstore
from taskstore.retry import Exponential

app = taskstore.App("sqlite:///never-opened.db")

@app.task
def double(x: int) -> int:
    return 2 * x

calls = []

@app.task(max_attempts=3, retry=Exponential(base=10.0, jitter=0))
async def flaky() -> str:
    calls.append(1)
    if len(calls) < 3:
        raise ConnectionError("down")
    return "ok"
"""

TESTS = """
import pytest
from taskstore.testing import drain, run_until_complete
from tasks import app, double, flaky

def test_eager(taskstore_app):
    assert taskstore_app(app, eager=True) is app
    assert app.url == "memory://"
    assert double.enqueue_sync(2).result_sync(timeout=0) == 4

@pytest.mark.asyncio
async def test_drain_on_the_fixture_clock(taskstore_app, taskstore_clock):
    taskstore_app(app)
    assert app.clock is taskstore_clock
    await double.enqueue(3)
    assert await drain(app) == 1
    start = taskstore_clock.now()
    assert await run_until_complete(app, await flaky.enqueue()) == "ok"
    assert (taskstore_clock.now() - start).total_seconds() == 30

@pytest.mark.asyncio
async def test_each_test_gets_an_empty_store(taskstore_app):
    taskstore_app(app)
    assert await drain(app) == 0

@pytest.mark.asyncio
async def test_a_sqlite_store_is_closed_after_the_test(taskstore_app, tmp_path):
    taskstore_app(app, url=f"sqlite:///{tmp_path / 'test.db'}")
    await double.enqueue(1)
    assert await drain(app) == 1

def test_the_app_has_its_own_settings_back():
    assert app.url == "sqlite:///never-opened.db"
    assert app.clock is None
    assert not app.eager
    assert app._store is None
"""


def test_the_fixtures_configure_an_app_for_one_test_and_give_it_back(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tasks=TASKS, test_app=TESTS)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", timeout=60)
    result.assert_outcomes(passed=5)
    assert not (pytester.path / "never-opened.db").exists()


def test_the_plugin_is_registered_by_entry_point() -> None:
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "taskstore"]
    assert plugin.value == "taskstore.testing.plugin"


def test_the_app_helpers_import_without_pytest_or_hypothesis() -> None:
    import subprocess
    import sys

    program = (
        "import sys; sys.modules['pytest'] = sys.modules['hypothesis'] = None\n"
        "from taskstore.testing import drain, run_until_complete, drain_sync, run_until_complete_sync\n"
        "import taskstore.testing as t\n"
        "try:\n    t.ConformanceSuite\nexcept ImportError:\n    print('suite needs pytest')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "suite needs pytest"
