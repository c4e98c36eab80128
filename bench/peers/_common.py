"""Shared by every system's benchmark script: timing helpers and the JSON line each prints.

Each script runs one scenario against one fresh database and prints one JSON object on its last line.
The scripts import nothing from taskstore except taskstore's own, so each peer runs in its own venv.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any


def emit(**figures: Any) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def quantiles_ms(delays: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles([d * 1000 for d in delays], n=100)
    return qs[49], qs[98]


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start


def args() -> tuple[str, str, list[str]]:
    """``script DSN SCENARIO [numbers…]``"""
    return sys.argv[1], sys.argv[2], sys.argv[3:]
