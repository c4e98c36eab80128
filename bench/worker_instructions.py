"""Instructions the worker process spends per task it drains, counted by callgrind: a figure that does not move
with what else the machine is doing (CPU seconds and throughput do, on a shared 2-core machine).

    python3 -m bench.worker_instructions [--small 500] [--large 3000] [--worker-args "--loop asyncio"]

Runs ``taskstore worker taskstore_app:app --concurrency 100 --prefetch 100 --log-level warning`` (as the harness
ran it until it took the README's five-per-slot prefetch: kept, so that counts compare with the earlier ones)
under ``valgrind --tool=callgrind`` twice, on a fresh PostgreSQL schema filled with --small and then --large no-op
tasks (VACUUM ANALYZE after each fill), and stops it once every task is done. Start-up, imports and the idle wait
before the stop are the same in both runs, so (large - small) / (large - small tasks) is the worker's cost per
task. The database server's CPU is not counted (see bench/pg_drain_profile.py for that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from psycopg import sql

import taskstore
from taskstore import NewTask

from .local_pg import pg_schema

PEERS = Path(__file__).parent / "peers"


async def instructions(n: int, concurrency: int, more: list[str], out: Path) -> int:
    """Fill a fresh schema with ``n`` no-op tasks, drain them under callgrind; the worker's instruction count."""
    with pg_schema(None, "bench_instr") as url:
        if url is None:
            raise SystemExit("no PostgreSQL server on 127.0.0.1:5432")
        app = taskstore.App(url)
        store = await app.store()
        for start in range(0, n, 10_000):
            batch = range(start, min(n, start + 10_000))
            await store.create_many([NewTask("bench", "noop", {"args": [float(i)], "kwargs": {}}) for i in batch])
        driver = store._driver  # type: ignore[attr-defined]
        pool = getattr(driver._pool, "pool", driver._pool)
        async with pool.connection() as conn:
            await conn.execute(sql.SQL("VACUUM ANALYZE {}.tasks").format(sql.Identifier(driver.schema)))
        with tempfile.TemporaryDirectory() as tmp:
            spans = Path(tmp) / "spans"
            spans.write_bytes(bytes(64))  # _spans.HEADER and no records: noop handlers only count
            cli = Path(sys.executable).parent / "taskstore"
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(cli), "worker",
                   "taskstore_app:app", "--url", url, "--queue", "bench", "--concurrency", str(concurrency),
                   "--prefetch", str(concurrency), "--log-level", "warning", *more]  # fmt: skip
            env = {**os.environ, "BENCH_SPANS": str(spans)}
            proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=PEERS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while await store.count(taskstore.State.DONE) < n:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # the same idle tail in every run
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 300)
        await app.aclose()
    text = await asyncio.to_thread(out.read_text, errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if found is None:
        raise SystemExit(f"no totals in {out}")
    return int(found.group(1))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--worker-args", default="", help="more arguments for `taskstore worker`")
    parser.add_argument("--keep", type=Path, default=None, help="keep callgrind's files (small, large) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        small = await instructions(args.small, args.concurrency, args.worker_args.split(), where / "small")
        large = await instructions(args.large, args.concurrency, args.worker_args.split(), where / "large")
    per_task = (large - small) / (args.large - args.small)
    print(
        f"worker instructions per task: {per_task:,.0f} (`taskstore worker` {args.worker_args}; "
        f"{small:,} for {args.small:,} tasks, {large:,} for {args.large:,})"
    )


if __name__ == "__main__":
    asyncio.run(main())
