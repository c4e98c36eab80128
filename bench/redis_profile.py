"""What taskstore's Redis worker costs per task: round trips, Redis commands, CPU (worker and server).

    python -m bench.redis_profile [--n 20000] [--kind noop|sleep] [--concurrency 100] [--latency 500]

Runs taskstore-redis exactly as the harness does (bench/harness.py's ``child``: the adapter fills a fresh store,
then ``taskstore worker`` drains it), on a redis-server of its own (bench/servers.py), with every process's
redis-py client counting its round trips (bench/_roundtrips/sitecustomize.py) and the server's
``INFO commandstats`` read around the drain. ``--latency RATE`` runs the open-loop latency scenario instead and
also reports the producer's round trips per single enqueue. Prints per-task figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import child
from bench.servers import redis_server
from bench.systems import SYSTEMS

HERE = Path(__file__).resolve().parent


def per(counts: dict[str, int], n: int) -> str:
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / n:.3f}" for k, v in top if v / n >= 0.0005)


def commandstats(client: Any) -> dict[str, tuple[int, int]]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}


def record(out: str, port: str, stop: threading.Event, role: str) -> None:
    """Attach py-spy to the worker process (``taskstore worker ... --url redis://...:port``) once it is up, or
    to the latency scenario's producer (``role`` "produce")."""
    import psutil

    while not stop.is_set():
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if role in cmd and any(f":{port}/" in c for c in cmd):
                spy = Path(sys.executable).parent / "py-spy"
                subprocess.run([str(spy), "record", "--pid", str(proc.pid), "--format", "raw", "-o", out, "-r", "250"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--kind", default="noop", choices=("noop", "sleep"))
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--latency", type=int, default=None, help="open-loop rate (tasks/s) for 4 s instead")
    parser.add_argument("--pyspy", default=None, help="record the worker with py-spy into this file (raw format)")
    parser.add_argument("--pyspy-role", default="worker", choices=("worker", "produce"))
    opts = parser.parse_args()
    system = next(s for s in SYSTEMS if s.key == "taskstore-redis")
    with tempfile.TemporaryDirectory() as out, redis_server() as backend:
        os.environ["BENCH_ROUNDTRIPS"] = out
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(HERE / "_roundtrips"), os.environ.get("PYTHONPATH")])
        )
        url = backend.fresh("profile")
        if opts.latency:
            n = opts.latency * 4
            params: dict[str, Any] = {"rate": opts.latency, "seconds": 4, "concurrency": 100, "wait": 5}
        else:
            n = opts.n
            filled = child(system, "fill", url, {"kind": opts.kind, "n": n}, timeout=600)
            assert "error" not in filled, filled
            fill = [json.loads(p.read_text()) for p in Path(out).glob("*.json")]
            for p in Path(out).glob("*.json"):
                p.unlink()
            print(f"fill (create_many, 1,000 a call): round trips per task: {per(fill[0]['trips'], n)}")
        stop = threading.Event()
        if opts.pyspy:
            port = url.rsplit(":", 1)[1].split("/")[0]
            threading.Thread(target=record, args=(opts.pyspy, port, stop, opts.pyspy_role), daemon=True).start()
        backend.client.config_set("slowlog-log-slower-than", 5000)
        backend.client.slowlog_reset()
        stats0, cpu0 = commandstats(backend.client), backend.server_cpu()
        if opts.latency:
            result = child(system, "latency", url, params, 120)
        else:
            work = {"kind": opts.kind, "n": n, "concurrency": opts.concurrency, "cap": 300}
            result = child(system, "work", url, work, 420)
        stats1, cpu1 = commandstats(backend.client), backend.server_cpu()
        stop.set()
        print(json.dumps({k: v for k, v in result.items() if k != "settings"}))
        slow = backend.client.slowlog_get(10)
        for entry in slow:
            print(f"slowlog: {entry['duration']} µs: {str(entry['command'])[:100]}")
        dumps = [json.loads(p.read_text()) for p in Path(out).glob("*.json")]
        for d in dumps:
            role = "worker" if "worker" in d["argv"] else ("producer" if "produce" in d["argv"] else "harness side")
            print(f"{role}: round trips per task: {per(d['trips'], n)}  (total {sum(d['trips'].values()) / n:.3f})")
            print(f"{role}: commands per task: {per(d['commands'], n)}")
        calls = {k: c - stats0.get(k, (0, 0))[0] for k, (c, _) in stats1.items()}
        usec = {k: u - stats0.get(k, (0, 0))[1] for k, (_, u) in stats1.items()}
        print(f"server: commands per task (scripts' inner commands included): {per(calls, n)}")
        print(f"server: command µs per task: {sum(usec.values()) / n:.1f} (evalsha {usec.get('evalsha', 0) / n:.1f})")
        if cpu0 is not None and cpu1 is not None:
            print(f"server: process CPU µs per task: {(cpu1 - cpu0) / n * 1e6:.1f}")
        if "worker_cpu_s" in result:
            print(f"worker: CPU µs per task: {result['worker_cpu_s'] / result['done'] * 1e6:.1f}")


if __name__ == "__main__":
    main()
