"""A worker and a producer that use only taskstore's HTTP API (SPEC §10): what a service in another language does.

    python bench/http_worker.py work BASE_URL '{"token": ..., "queue": ..., "batch": 50, ...}'
    python bench/http_worker.py produce BASE_URL '{"token": ..., "queue": ..., "rate": 500, "seconds": 10}'

``work`` claims up to ``batch`` tasks at a time (``POST /api/v1/claims`` with ``block_for``, so an empty queue
costs one waiting request, not a busy loop), runs a no-op for each and finishes the whole batch with one
``POST /api/v1/completions``. It stops after ``idle`` empty claims in a row, or at ``cap`` seconds, and prints
one JSON line: tasks done, wall-clock time of its first claim that returned tasks and of its last completion.

``produce`` sends ``POST /api/v1/tasks`` open loop: request i is due at ``at + i / rate`` whether or not the
ones before it have been answered (a pool of threads, each with its own connection, takes the slots), and its
latency runs from that slot to the response, so a slow server shows as latency, not as a lower rate.

The HTTP client is the standard library's ``http.client`` on one kept-alive connection per thread: the worker
makes two requests per 50 tasks, so the client's per-request cost (tens of microseconds) is noise next to
the server's, and nothing needs installing. No taskstore import: the wire format is all it knows.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit


class Api:
    """One kept-alive connection to the server; JSON in, JSON out; a non-2xx answer raises with its problem."""

    def __init__(self, base: str, token: str | None, timeout: float = 70.0) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def post(self, path: str, body: Any) -> Any:
        data = json.dumps(body, separators=(",", ":")).encode()
        for attempt in (1, 2):
            try:
                self.conn.request("POST", "/api/v1" + path, data, self.headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                # The server closed a kept-alive connection between requests: reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
                continue
            if response.status >= 300:
                raise RuntimeError(f"POST {path}: {response.status} {payload[:500]!r}")
            return json.loads(payload)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def work(base: str, params: dict[str, Any]) -> dict[str, Any]:
    api = Api(base, params.get("token"))
    worker_id = params.get("worker_id") or f"http-{os.getpid()}"
    claim = {
        "worker_id": worker_id,
        "queues": [params.get("queue", "bench")],
        "limit": int(params.get("batch", 50)),
        "block_for": float(params.get("block_for", 1.0)),
    }
    idle_limit = int(params.get("idle", 2))
    cap = time.monotonic() + float(params.get("cap", 600))
    done = failed = idle = 0
    first: float | None = None
    last: float | None = None
    while idle < idle_limit and time.monotonic() < cap:
        tasks = api.post("/claims", claim)["tasks"]
        if not tasks:
            idle += 1
            continue
        idle = 0
        if first is None:
            first = time.time()
        # The handler: a no-op whose result is the task's first argument (so a checker could verify it).
        finished = [{"id": t["id"], "token": t["token"], "result": t["args"]} for t in tasks]
        outcomes = api.post("/completions", {"worker_id": worker_id, "tasks": finished})["outcomes"]
        ok = sum(1 for o in outcomes if o["ok"])
        done += ok
        failed += len(outcomes) - ok
        last = time.time()
    api.close()
    return {"done": done, "refused": failed, "first": first, "last": last}


def produce(base: str, params: dict[str, Any]) -> dict[str, Any]:
    rate, seconds = float(params["rate"]), float(params["seconds"])
    at = float(params.get("at") or time.time() + 0.2)
    total = int(rate * seconds)
    body_of = {"queue": params.get("queue", "bench"), "kind": params.get("kind", "noop")}
    took: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    slots = iter(range(total))

    def sender() -> None:
        api = Api(base, params.get("token"))
        while True:
            with lock:
                i = next(slots, None)
            if i is None:
                break
            slot = at + i / rate
            delay = slot - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                api.post("/tasks", {**body_of, "args": {"args": [i], "kwargs": {}}})
            except Exception as exc:  # counted and shown, not fatal: the figure says how many failed
                with lock:
                    errors.append(str(exc))
                continue
            took.append(time.time() - slot)
        api.close()

    # Enough senders that a slow answer never delays the next slot (open loop): 500/s at 20 ms each needs 10.
    threads = [threading.Thread(target=sender, daemon=True) for _ in range(int(params.get("threads", 32)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = sorted(d * 1000 for d in took)
    qs = statistics.quantiles(ms, n=100) if len(ms) > 1 else [ms[0] if ms else 0.0] * 99
    return {
        "p50_ms": qs[49],
        "p99_ms": qs[98],
        "max_ms": ms[-1] if ms else 0.0,
        "sent": len(took),
        "planned": total,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    command, base, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")
    if command == "work":
        result = work(base, params)
    elif command == "produce":
        result = produce(base, params)
    else:
        raise SystemExit(f"unknown command {command!r}: work or produce")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
