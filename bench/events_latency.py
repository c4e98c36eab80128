"""``GET /api/v1/events`` against a ``taskstore serve`` process: delivery delay, and what idle streams cost.

    python bench/events_latency.py [--tasks 100] [--streams 50] [--postgres URL]

Delay: for each task a client streams ``?id=…``; once it has seen ``queued``, this process (not the server)
claims and completes the task and notes the time; the client notes when ``succeeded`` arrives. So the change
travels store -> backend wake-up (NOTIFY, or SQLite's -shm watch) -> the server's watcher -> HTTP.
Idle cost: the server's CPU time (user + system, from /proc) over a few seconds with no stream, then with
``--streams`` open streams on tasks that never change: a stream fed by wake-ups costs next to nothing.
Needs the test extra (httpx2). PostgreSQL as in watch_latency.py. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2

import taskstore
from bench.local_pg import pg_schema
from taskstore import NewTask

IDLE_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(url: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    args = [sys.executable, "-m", "taskstore", "serve", "--url", url, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(args)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until_up(client: httpx2.AsyncClient) -> None:
    for _ in range(300):
        with contextlib.suppress(httpx2.TransportError):
            if (await client.get("/api/openapi.json")).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("taskstore serve did not come up")


async def _data_lines(response: httpx2.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line


async def measure(url: str, tasks: int, streams: int) -> None:
    with _server(url) as (base, pid):
        async with taskstore.open(url) as store, httpx2.AsyncClient(base_url=base, timeout=30) as client:
            await _until_up(client)
            delays = []
            for i in range(tasks):
                task = await store.create(NewTask("events", "noop", {"i": i}))
                async with client.stream("GET", "/api/v1/events", params={"id": task.id}) as response:
                    lines = _data_lines(response)
                    assert '"queued"' in await anext(lines)
                    (claimed,) = await store.claim("bench", ["events"], limit=1)
                    await store.mark_done(claimed, result=i)
                    done_at = time.perf_counter()
                    async for line in lines:
                        if '"succeeded"' in line:
                            delays.append((time.perf_counter() - done_at) * 1000)
                            break
            qs = statistics.quantiles(delays, n=100)
            print(f"  completion in another process -> event at the client: p50 {qs[49]:.1f} ms, p99 {qs[98]:.1f} ms")

            before = _cpu_seconds(pid)
            await asyncio.sleep(IDLE_SECONDS)
            baseline = (_cpu_seconds(pid) - before) / IDLE_SECONDS * 100
            held = [await store.create(NewTask("idle", "never")) for _ in range(streams)]
            async with contextlib.AsyncExitStack() as stack:
                for t in held:
                    response = await stack.enter_async_context(
                        client.stream("GET", "/api/v1/events", params={"id": t.id})
                    )
                    await anext(_data_lines(response))
                await asyncio.sleep(0.5)
                before = _cpu_seconds(pid)
                await asyncio.sleep(IDLE_SECONDS)
                loaded = (_cpu_seconds(pid) - before) / IDLE_SECONDS * 100
            print(f"  server CPU, idle: {baseline:.1f}% of a core; with {streams} idle streams: {loaded:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--postgres", default=os.environ.get("TASKSTORE_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite:")
        asyncio.run(measure(f"sqlite:///{Path(tmp, 'events.db')}", args.tasks, args.streams))
    with pg_schema(args.postgres, "bench_events") as url:
        if url is not None:
            print("PostgreSQL:")
            asyncio.run(measure(url, args.tasks, args.streams))


if __name__ == "__main__":
    main()
