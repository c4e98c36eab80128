"""Which store ``taskstore worker MOD:APP`` uses: ``--url``, then the App's own URL, then ``$TASKSTORE_URL``.

Run as a user runs it, in a subprocess: the start line names the store (password hidden), and a URL given
but not used is one WARNING line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import taskstore
from taskstore import NewTask, State

_APP = """
import taskstore

app = taskstore.App({url!r})


@app.task(queue="q", kind="job")
def job() -> str:
    return "ran"
"""


def _write_app(tmp_path: Path, url: str | None) -> None:
    (tmp_path / "url_app.py").write_text(_APP.format(url=url))


def _run_worker(tmp_path: Path, *args: str, env_url: str | None = None, until: str = "started on") -> str:
    """Start the worker, wait (30 s at most) until stderr shows ``until``, stop it; its whole stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TASKSTORE_URL"}
    if env_url is not None:
        env["TASKSTORE_URL"] = env_url
    err_path = tmp_path / "worker.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskstore", "worker", "url_app:app", "--no-maintenance", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while until not in err_path.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return err_path.read_text()


def _warnings(stderr: str) -> list[str]:
    """The WARNING lines, but for the one the stop signal gives."""
    return [line for line in stderr.splitlines() if " WARNING " in line and "SIGTERM" not in line]


async def _enqueue(url: str) -> str:
    async with taskstore.open(url) as store:
        return (await store.create(NewTask("q", "job"))).id


async def _state(url: str, task_id: str) -> State:
    async with taskstore.open(url) as store:
        return (await store.get(task_id)).state


def test_the_apps_own_url_wins_over_the_environment_with_a_warning(tmp_path: Path) -> None:
    app_url, env_url = f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'env.db'}"
    _write_app(tmp_path, app_url)
    task_id = asyncio.run(_enqueue(app_url))
    stderr = _run_worker(tmp_path, env_url=env_url, until=f"task {task_id} (job) on queue q, attempt 1/10: done in")
    assert f"started on {app_url}" in stderr
    assert asyncio.run(_state(app_url, task_id)) is State.DONE
    assert not (tmp_path / "env.db").exists()
    [warning] = _warnings(stderr)
    assert "$TASKSTORE_URL" in warning
    assert env_url in warning
    assert app_url in warning


def test_url_flag_wins_over_the_apps_own_with_a_warning_and_no_password(tmp_path: Path) -> None:
    flag_url = f"sqlite:///{tmp_path / 'flag.db'}"
    _write_app(tmp_path, "postgresql://app:s3cret@127.0.0.1:9/nowhere")
    stderr = _run_worker(tmp_path, "--url", flag_url, env_url=f"sqlite:///{tmp_path / 'env.db'}")
    assert f"started on {flag_url}" in stderr
    [warning] = _warnings(stderr)
    assert f"--url {flag_url} overrides the App's own URL postgresql://app:***@127.0.0.1:9/nowhere" in warning
    assert "s3cret" not in stderr


def test_an_app_without_a_url_takes_the_environment_quietly(tmp_path: Path) -> None:
    env_url = f"sqlite:///{tmp_path / 'env.db'}"
    _write_app(tmp_path, None)
    stderr = _run_worker(tmp_path, env_url=env_url)
    assert f"started on {env_url}" in stderr
    assert _warnings(stderr) == []


def test_a_url_flag_equal_to_the_apps_is_quiet(tmp_path: Path) -> None:
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    _write_app(tmp_path, app_url)
    stderr = _run_worker(tmp_path, "--url", app_url, env_url=app_url)
    assert f"started on {app_url}" in stderr
    assert _warnings(stderr) == []


def test_the_worker_runs_on_uvloop_by_default_and_on_asyncio_when_asked(tmp_path: Path) -> None:
    """uvloop is a dependency where it is built (not Windows, not PyPy): the worker takes it unless told not to,
    and does the same work on either loop."""
    url = f"sqlite:///{tmp_path / 'loops.db'}"
    _write_app(tmp_path, url)
    for flags, loop in (((), "uvloop"), (("--loop", "asyncio"), "asyncio")):
        task_id = asyncio.run(_enqueue(url))
        stderr = _run_worker(tmp_path, *flags, until=f"task {task_id} (job) on queue q, attempt 1/10: done in")
        assert f"concurrency 10, {loop} event loop" in stderr
        assert asyncio.run(_state(url, task_id)) is State.DONE


def test_an_unknown_loop_is_refused_before_anything_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loops.db'}"
    _write_app(tmp_path, url)
    task_id = asyncio.run(_enqueue(url))
    stderr = _run_worker(tmp_path, "--loop", "trio", until="never printed")
    assert "unknown event loop 'trio': expected one of auto, asyncio, uvloop" in stderr
    assert "started on" not in stderr
    assert asyncio.run(_state(url, task_id)) is State.QUEUED
