"""``taskstore serve --workers N``: N server processes on one port, each with its own store connections."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskstore.errors import ConfigError
from taskstore.serve import run_server

from .procs import TOKEN, Http, Processes, free_port, processes, serves, wait_until

__all__ = ["processes"]  # a fixture


def spawned_children(pid: int) -> list[int]:
    """The processes uvicorn started for ``pid`` (multiprocessing's spawn_main), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_serve_with_two_processes_answers_and_stops(processes: Processes, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{tmp_path / 'two.db'}"
    server = processes.start(
        "serve", [sys.executable, "-m", "taskstore", "serve", "--url", url, "--port", str(port), "--workers", "2",
                  "--token", f"worker:{TOKEN}", "--log-level", "warning"],
    )  # fmt: skip
    wait_until(lambda: serves(base), 60, "taskstore serve to answer", server)
    wait_until(lambda: len(spawned_children(server.pid)) == 2, 30, "two server processes", server)
    http = Http(base)
    # New connections each time (urllib): the kernel spreads them over both processes; every one sees all tasks.
    ids = [http.call("POST", "/tasks", {"queue": "two", "kind": "k", "args": i})["id"] for i in range(20)]
    assert [t["id"] for t in http.tasks("two")] == ids
    children = spawned_children(server.pid)
    server.terminate()
    assert server.wait(timeout=30) == 0, processes.log("serve")
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a server process outlived the parent"


@pytest.mark.parametrize("workers", [0, -1, True])
def test_serve_refuses_a_bad_number_of_processes(workers: int) -> None:
    with pytest.raises(ConfigError, match="workers"):
        run_server("memory://", host="127.0.0.1", port=0, tokens=None, max_body=1 << 20, workers=workers)


def test_serve_refuses_several_processes_over_a_memory_store() -> None:
    with pytest.raises(ConfigError, match="memory"):
        run_server("memory://", host="127.0.0.1", port=0, tokens=None, max_body=1 << 20, workers=2)
