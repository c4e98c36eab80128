"""Workers in two languages on one queue: ``curl_worker.sh`` (bash, curl, jq) through ``taskstore serve``, and
``taskstore worker`` (Python) on the store itself, with the same task kind.

A few hundred tasks are enqueued over HTTP; some report progress, some fail their first attempt on purpose.
Each worker records every execution to a file; the checker then finds every task done exactly once, with the
right result, every planned failure retried to success, and nothing run that was not planned.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from .curl_app import KIND
from .procs import TOKEN, Http, Processes, free_port, processes, serves, wait_until

__all__ = ["processes"]  # a fixture

SCRIPT = Path(__file__).resolve().parent / "curl_worker.sh"
TASKS = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("curl") is None or shutil.which("jq") is None,
        reason="curl and jq are needed for the curl worker (.ci/run installs them)",
    ),
]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mixed.db'}"
    return str(request.getfixturevalue("postgres_db"))


def plan(i: int) -> dict[str, Any]:
    """Task i's kwargs: every 5th reports progress, every 7th fails its first attempt."""
    return {"n": i, "progress": i % 5 == 0, "fail_first": i % 7 == 0}


def read_records(*paths: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in paths:
        if path.exists():
            lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def test_a_curl_worker_and_a_python_worker_share_a_queue(url: str, processes: Processes, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    queue = f"mixed-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session's tests
    cli = [sys.executable, "-m", "taskstore"]
    server = processes.start(
        "serve",
        [*cli, "serve", "--url", url, "--port", str(port), "--token", f"worker:{TOKEN}", "--log-level", "warning"],
    )
    wait_until(lambda: serves(base), 60, "taskstore serve to answer", server)
    http = Http(base)

    def enqueue(numbers: range) -> None:
        created = http.call(
            "POST",
            "/tasks",
            {"tasks": [{"queue": queue, "kind": KIND, "id": f"t{i}", "args": {"args": [], "kwargs": plan(i)},
                        "max_attempts": 3} for i in numbers]},
        )  # fmt: skip
        assert len(created["tasks"]) == len(numbers)

    # Both workers surely take a share: the curl worker starts alone on the first half; the second half is
    # enqueued once the Python worker is live (its heartbeat is written before it claims anything).
    enqueue(range(TASKS // 2))

    curl_record, python_record, stop = tmp_path / "curl.jsonl", tmp_path / "python.jsonl", tmp_path / "stop"
    curl = processes.start(
        "curl",
        ["bash", str(SCRIPT), base],
        {"TASKSTORE_TOKEN": TOKEN, "QUEUE": queue, "WORKER_ID": "curl-1", "BATCH": "5", "BLOCK_FOR": "0.5",
         "STOP_FILE": str(stop), "RECORD": str(curl_record)},
    )  # fmt: skip
    wait_until(lambda: bool(read_records(curl_record)), 60, "the curl worker's first task", curl)
    python = processes.start(
        "python",
        [*cli, "worker", "tests.web.curl_app:app", "--url", url, "--queue", queue, "--concurrency", "4",
         "--log-level", "warning"],
        {"CURL_TEST_RECORD": str(python_record)},
    )  # fmt: skip

    def python_live() -> bool:
        return any(queue in w["queues"] for w in http.call("GET", "/workers")["workers"])

    wait_until(python_live, 60, "the Python worker's heartbeat", python)
    enqueue(range(TASKS // 2, TASKS))

    def all_done() -> bool:
        return sum(1 for t in http.tasks(queue) if t["state"] == "done") == TASKS

    wait_until(all_done, 90, "every task to be done", curl)
    stop.touch()
    assert curl.wait(timeout=30) == 0, processes.log("curl")
    python.terminate()
    assert python.wait(timeout=30) == 0, processes.log("python")

    records = read_records(curl_record, python_record)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in records:
        by_task[line["id"]].append(line)
    tasks = {t["id"]: t for t in http.tasks(queue)}
    assert set(tasks) == set(by_task) == {f"t{i}" for i in range(TASKS)}
    for i in range(TASKS):
        task_id, kwargs = f"t{i}", plan(i)
        runs = sorted(by_task[task_id], key=lambda line: line["attempt"])
        task = tasks[task_id]
        # Exactly the planned executions: a failed first attempt then a done second one, or one done run.
        expected = [(1, "failed"), (2, "done")] if kwargs["fail_first"] else [(1, "done")]
        assert [(r["attempt"], r["outcome"]) for r in runs] == expected, (task_id, runs)
        assert task["state"] == "done", task
        assert task["attempts"] == len(expected), task
        assert task["result"]["value"] == 3 * i + 1 == runs[-1]["result"], (task, runs)
        if kwargs["fail_first"]:
            assert [f["failure"]["type"].rsplit(".", 1)[-1] for f in task["failures"]] == ["Flaky"], task
        for run in runs:
            if run["by"] == "curl":
                assert run["status"] == 200, run
                assert run["reported"] is kwargs["progress"], run  # its report was stored and answered
    done_by = {r["by"] for r in records if r["outcome"] == "done"}
    assert done_by == {"curl", "python"}, "both workers should have finished tasks"
    # The curl worker's share (the first tasks, t0 among them) had a progress report and a planned failure.
    curl_runs = [r for r in records if r["by"] == "curl"]
    assert any(r["outcome"] == "failed" for r in curl_runs), curl_runs
    assert any(r["reported"] for r in curl_runs), curl_runs


def test_a_stopped_curl_worker_gives_its_batch_back(processes: Processes, tmp_path: Path) -> None:
    """SIGTERM mid-batch: the task in hand is finished, the rest are unclaimed (no attempt spent), none left held."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    server = processes.start(
        "serve", [sys.executable, "-m", "taskstore", "serve", "--url", url, "--port", str(port),
                  "--token", f"worker:{TOKEN}", "--log-level", "warning"],
    )  # fmt: skip
    wait_until(lambda: serves(base), 60, "taskstore serve to answer", server)
    http = Http(base)
    tasks = [{"queue": "stop", "kind": KIND, "args": {"args": [], "kwargs": {"n": i}}} for i in range(200)]
    http.call("POST", "/tasks", {"tasks": tasks})
    record = tmp_path / "curl.jsonl"
    curl = processes.start(
        "curl",
        ["bash", str(SCRIPT), base],
        {"TASKSTORE_TOKEN": TOKEN, "QUEUE": "stop", "BATCH": "50", "BLOCK_FOR": "0.5", "RECORD": str(record)},
    )
    wait_until(lambda: bool(read_records(record)), 60, "the curl worker's first task", curl)
    curl.terminate()
    assert curl.wait(timeout=30) == 0, processes.log("curl")
    states = {t["id"]: t for t in http.tasks("stop")}
    done = {r["id"] for r in read_records(record) if r["outcome"] == "done"}
    assert done, "it finished at least the task in hand"
    for task_id, task in states.items():
        if task_id in done:
            assert task["state"] == "done", task
        else:  # given back, or never claimed: queued, and no attempt spent
            assert (task["state"], task["attempts"]) == ("queued", 0), task


def test_the_curl_worker_reads_positional_args_refuses_bad_ones_and_exits_when_idle(
    processes: Processes, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = processes.start(
        "serve", [sys.executable, "-m", "taskstore", "serve", "--url", f"sqlite:///{tmp_path / 'args.db'}",
                  "--port", str(port), "--token", f"worker:{TOKEN}", "--log-level", "warning"],
    )  # fmt: skip
    wait_until(lambda: serves(base), 60, "taskstore serve to answer", server)
    http = Http(base)
    args: list[Any] = [[5], ["five"], [2.5], []]
    tasks = [
        {"queue": "args", "kind": KIND, "id": f"a{i}", "args": {"args": a, "kwargs": {}}} for i, a in enumerate(args)
    ]
    http.call("POST", "/tasks", {"tasks": tasks})
    curl = processes.start(
        "curl", ["bash", str(SCRIPT), base],
        {"TASKSTORE_TOKEN": TOKEN, "QUEUE": "args", "BLOCK_FOR": "0.2", "IDLE_EXIT": "2"},
    )  # fmt: skip
    assert curl.wait(timeout=60) == 0, processes.log("curl")  # on its own: two empty claims in a row
    states = {t["id"]: t for t in http.tasks("args")}
    assert (states["a0"]["state"], states["a0"]["result"]["value"]) == ("done", 16)
    assert (states["a2"]["state"], states["a2"]["result"]["value"]) == ("done", 8.5)
    for bad in ("a1", "a3"):  # not retried: the failure says retrying cannot help
        assert (states[bad]["state"], states[bad]["attempts"]) == ("dead", 1), states[bad]
        assert states[bad]["result"]["failure"]["type"] == "BadArguments", states[bad]
