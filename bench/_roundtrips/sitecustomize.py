"""Counts the Redis round trips of every process started with this directory on PYTHONPATH (bench/redis_profile.py).

A round trip is one ``execute_command`` of redis-py's asyncio client (a script call is one: EVALSHA) or one
pipeline ``execute`` (however many commands it carries). At exit each process writes its counts to
``$BENCH_ROUNDTRIPS/<pid>.json`` with its command line, so the profile can pick the worker's. PubSub's own
connection is not counted: its messages are pushed, not asked for.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys

_OUT = os.environ.get("BENCH_ROUNDTRIPS")

if _OUT:
    try:
        from redis.asyncio import client as _client
    except ImportError:  # a venv without redis-py: nothing to count
        _client = None  # type: ignore[assignment]
    if _client is not None:
        trips: collections.Counter[str] = collections.Counter()
        commands: collections.Counter[str] = collections.Counter()

        def _name(args: tuple[object, ...]) -> str:
            name = str(args[0]).upper()
            if name == "EVALSHA":
                return f"EVALSHA {str(args[1])[:8]}"
            return name

        single = _client.Redis.execute_command
        batch = _client.Pipeline.execute

        async def execute_command(self: object, *args: object, **options: object) -> object:
            trips[_name(args)] += 1
            commands[_name(args)] += 1
            return await single(self, *args, **options)  # type: ignore[arg-type]

        async def execute(self: object, raise_on_error: bool = True) -> object:
            stack = getattr(self, "command_stack", [])
            names = sorted({_name(c.args) if hasattr(c, "args") else _name(c[0]) for c in stack})
            trips["pipeline(" + ",".join(names) + ")"] += 1
            for c in stack:
                commands[_name(c.args) if hasattr(c, "args") else _name(c[0])] += 1
            return await batch(self, raise_on_error)  # type: ignore[arg-type]

        _client.Redis.execute_command = execute_command  # type: ignore[method-assign]
        _client.Pipeline.execute = execute  # type: ignore[method-assign]

        @atexit.register
        def _dump() -> None:
            path = os.path.join(_OUT, f"{os.getpid()}.json")
            with open(path, "w") as f:
                json.dump({"argv": sys.argv, "trips": trips, "commands": commands}, f)
