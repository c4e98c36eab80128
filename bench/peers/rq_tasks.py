"""rq's handlers, in a module of their own so rq's worker processes can import them by name.

rq runs each job in a worker process, so handlers report to Redis (one pipelined round trip per job) and the
benchmark's main process reads the counts from there.
"""

from __future__ import annotations

import os
import time

import redis

_conn: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _conn


def _report(started: float) -> None:
    pipe = _redis().pipeline(transaction=False)
    pipe.set("bench:first", repr(started), nx=True)
    pipe.set("bench:last", repr(time.time()))
    pipe.incr("bench:done")
    pipe.execute()


def noop(p: float) -> None:
    _report(time.time())


def sleep(p: float) -> None:
    started = time.time()
    time.sleep(0.001)
    _report(started)


def timed(p: float) -> None:
    pipe = _redis().pipeline(transaction=False)
    pipe.rpush("bench:delays", repr(time.time() - p))
    pipe.incr("bench:done")
    pipe.execute()


def keyed(p: float, key: int) -> None:
    """A no-op that records its span for the overlap check: (key, start, end) on a Redis list."""
    started = time.time()
    ended = time.time()
    pipe = _redis().pipeline(transaction=False)
    pipe.rpush("bench:spans", f"{key} {started!r} {ended!r}")
    pipe.set("bench:first", repr(started), nx=True)
    pipe.set("bench:last", repr(ended))
    pipe.incr("bench:done")
    pipe.execute()
