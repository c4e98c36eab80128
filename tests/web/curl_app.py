"""The Python side of the mixed-language test: ``taskstore worker tests.web.curl_app:app`` on the queue that
``curl_worker.sh`` also works, with the same task kind and the same meaning of its arguments.

Each execution appends one JSON line to ``$CURL_TEST_RECORD`` (the curl worker writes its own file in the
same shape), so the checker sees every run, by whom, and how it ended.
"""

from __future__ import annotations

import json
import os

import taskstore
from taskstore import BinaryExponential

app = taskstore.App()  # the URL comes from --url

QUEUE = "mixed"
KIND = "mixed.compute"


class Flaky(Exception):
    """The planned failure of a ``fail_first`` task's first attempt."""


def _record(line: dict[str, object]) -> None:
    path = os.environ.get("CURL_TEST_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as out:  # one small O_APPEND write per line
            out.write(json.dumps(line) + "\n")


# Retried at once (a failed first attempt comes back for a second), with room for a CPU-starved CI machine.
@app.task(queue=QUEUE, kind=KIND, max_attempts=3, retry=BinaryExponential(base=0.0, cap=0.0), processing_timeout=30)
def compute(n: int, progress: bool = False, fail_first: bool = False) -> int:
    task = taskstore.current_task()
    line: dict[str, object] = {"id": task.id, "attempt": task.attempts, "by": "python", "worker": os.getpid()}
    if fail_first and task.attempts == 1:
        _record({**line, "outcome": "failed"})
        raise Flaky("the first attempt fails on purpose")
    _record({**line, "outcome": "done", "result": 3 * n + 1})
    return 3 * n + 1
