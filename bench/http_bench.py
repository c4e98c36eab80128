"""The ``http`` scenario of the harness: taskstore worked and fed through ``taskstore serve`` only.

1. ``http_drain``: a store filled with no-op tasks, one ``taskstore serve`` started as users start it (the CLI,
   with a worker-role token), and ``HTTP_WORKERS`` processes of ``bench/http_worker.py`` (claims of 50 with
   ``block_for``, one ``POST /api/v1/completions`` per batch): tasks/s from the first claim that returned
   tasks to the last completion, and the CPU of the server process and of the database during the run.
   ``http_drain2`` is the same with ``taskstore serve --workers 2``.
2. ``http_enqueue``: ``POST /api/v1/tasks`` open loop at ``http_rate`` requests/s from one producer process;
   p50 and p99 from each request's slot to its answer.

Only for taskstore on PostgreSQL (the peers have no HTTP API to compare with).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.servers import Backend, free_port

HERE = Path(__file__).resolve().parent
HTTP_WORKERS = 4
BATCH = 50


@contextlib.contextmanager
def serving(url: str, token: str, processes: int = 1) -> Iterator[tuple[str, psutil.Process]]:
    """``taskstore serve`` on a free port, until the block ends; its base URL and its (parent) process."""
    port = free_port()
    cli = Path(sys.executable).parent / "taskstore"
    cmd = [str(cli), "serve", "--url", url, "--port", str(port), "--token", f"worker:{token}", "--log-level", "warning"]
    if processes > 1:
        cmd += ["--workers", str(processes)]
    proc = subprocess.Popen(cmd)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not answers(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"taskstore serve did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        yield base, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/openapi.json", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def http_worker(command: str, base: str, params: dict[str, Any]) -> subprocess.Popen[str]:
    script = str(HERE / "http_worker.py")
    cmd = [sys.executable, script, command, base, json.dumps(params)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def last_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench/http_worker.py exited {proc.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def drain(
    backend: Backend, fill: Callable[[str, int], dict[str, Any]], n: int, cap: float, processes: int = 1
) -> dict[str, Any]:
    """``fill(url, n)`` puts n no-op tasks in queue ``bench``; the workers then drain them through the server
    (``taskstore serve --workers processes``)."""
    url = backend.fresh("taskstore-postgres-http")
    filled = fill(url, n)
    if "error" in filled:
        return filled
    token = secrets.token_urlsafe(16)
    with serving(url, token, processes) as (base, server):
        server_cpu0, db_cpu0 = tree_cpu(server), backend.server_cpu()
        params = {"token": token, "queue": "bench", "batch": BATCH, "block_for": 0.5, "idle": 2, "cap": cap}
        procs = [http_worker("work", base, params) for _ in range(HTTP_WORKERS)]
        results = [last_json(p, cap + 60) for p in procs]
        server_cpu, db_cpu1 = tree_cpu(server) - server_cpu0, backend.server_cpu()
    done = sum(r["done"] for r in results)
    firsts = [r["first"] for r in results if r["first"]]
    lasts = [r["last"] for r in results if r["last"]]
    if not firsts:
        return {"error": "the HTTP workers finished no task"}
    elapsed = max(lasts) - min(firsts)
    result: dict[str, Any] = {
        "rate": done / elapsed if elapsed > 0 else 0.0,
        "done": done,
        "refused": sum(r["refused"] for r in results),
        "elapsed_s": elapsed,
        "serve_cpu_s": server_cpu,
        "capped": done < n,
        "settings": f"taskstore serve ({'one process' if processes == 1 else f'--workers {processes}'}, uvicorn) "
        f"and {HTTP_WORKERS} bench/http_worker.py processes: "
        f"POST /api/v1/claims limit {BATCH} with block_for, POST /api/v1/completions per batch",
    }
    if db_cpu0 is not None and db_cpu1 is not None:
        result["db_cpu_s"] = db_cpu1 - db_cpu0
    return result


def enqueue_latency(backend: Backend, rate: int, seconds: float) -> dict[str, Any]:
    url = backend.fresh("taskstore-postgres-http-enqueue")
    token = secrets.token_urlsafe(16)
    with serving(url, token) as (base, _):
        # One warm-up request opens the store's pool before the clock starts (the first one pays for it).
        warm = http_worker("produce", base, {"token": token, "rate": 10, "seconds": 0.1, "threads": 1})
        last_json(warm, 60)
        params = {"token": token, "queue": "bench", "rate": rate, "seconds": seconds, "at": time.time() + 0.5}
        result = last_json(http_worker("produce", base, params), seconds + 120)
    result["settings"] = f"one producer process, open loop at {rate}/s, a kept-alive connection per thread"
    return result
