"""The harness's pgqueuer drain against pgqueuer run outside it (bench/pgqueuer_standalone.py), interleaved.

    python -m bench.pgqueuer_check [--n 20000] [--pairs 3] [--url postgresql://...] [--taskstore]

Each pair runs both in the same minute, alternating which goes first, with the load average printed before each
run: the harness's drain (``harness.work``: fill, VACUUM ANALYZE, ``pgq run`` as bench/peers/pgqueuer_bench.py
launches it) and the standalone drain (the README's consumer, ``pgq run`` with its defaults). ``--taskstore`` adds
the harness's taskstore drain of the same N to each round; ``--flags "--batch-size 50 ..."`` (repeatable) runs the
standalone drain with those ``pgq run`` flags instead of the defaults. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import work
from bench.servers import Postgres
from bench.systems import SYSTEMS, prepare

HERE = Path(__file__).resolve().parent


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def standalone(python: str, url: str, n: int, flags: list[str]) -> dict[str, Any]:
    cmd = [python, str(HERE / "pgqueuer_standalone.py"), "--n", str(n), "--url", url]
    cmd += ["--", *flags] if flags else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": proc.stderr.strip().splitlines()[-3:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--taskstore", action="store_true", help="also the harness's taskstore drain, each round")
    parser.add_argument(
        "--flags",
        action="append",
        default=None,
        help="pgq run flags for a standalone drain; repeat for several drains a round (default: one, no flags)",
    )
    opts = parser.parse_args()
    systems = {s.key: s for s in SYSTEMS}
    prepare([systems["pgqueuer"]])
    backend = Postgres(opts.url, opts.url)
    variants = opts.flags or [""]

    def harness_run(key: str) -> None:
        print(f"  load {load()}  harness {key}: ", end="", flush=True)
        r = work(systems[key], backend, "check", "noop", opts.n, opts.n, None, 120)
        if "rate" not in r:
            print(r)
            return
        per_1k = 1e6 / opts.n
        print(
            f"{r['rate']:,.0f}/s (done {r['done']:,}, worker CPU {r['worker_cpu_s'] * per_1k:.0f} ms/1k, "
            f"server CPU {r.get('server_cpu_s', 0) * per_1k:.0f} ms/1k)",
            flush=True,
        )

    def standalone_run(flags: str) -> None:
        print(f"  load {load()}  standalone pgq run {flags or '(defaults)'}: ", end="", flush=True)
        r = standalone(systems["pgqueuer"].python, opts.url, opts.n, flags.split())
        if "handler_rate" not in r:
            print(r)
            return
        print(
            f"{r['handler_rate']:,.0f}/s (all rows gone: {r['db_rate'] or 0:,.0f}/s, "
            f"worker CPU {r['worker_cpu_ms_per_1k']:.0f} ms/1k, server CPU {r['server_cpu_ms_per_1k']:.0f} ms/1k)",
            flush=True,
        )

    for i in range(opts.pairs):
        print(f"round {i + 1}:", flush=True)
        runs = [lambda: harness_run("pgqueuer"), *(functools.partial(standalone_run, f) for f in variants)]
        for run in runs if i % 2 == 0 else runs[::-1]:
            run()
        if opts.taskstore:
            harness_run("taskstore-postgres")


if __name__ == "__main__":
    main()
