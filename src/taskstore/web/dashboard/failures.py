"""Dead tasks grouped by what killed them: failure type and message, with counts and first/last seen.

The store has no index over failure text, so the groups are built from a bounded scan of the newest dead
tasks (``SCAN_LIMIT``); the page says when the scan did not reach the end. Numbers, ids and hex in messages
often differ between otherwise identical failures ("timeout after 30.2 s", "row 1234"), so they are folded
into ``#`` for grouping while the first message is shown as it was.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...model import State, Task

SCAN_LIMIT = 10_000
_PAGE = 1_000
_VARYING = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}(?:-[0-9a-fA-F]{4,})*|\d+(?:\.\d+)?")


@dataclass
class FailureGroup:
    key: str
    type: str
    message: str
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    kinds: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)
    sample: str = ""


def _signature(task: Task) -> tuple[str, str, str]:
    failure = task.result.failure if task.result is not None else None
    kind = failure.type if failure is not None else "(no failure recorded)"
    message = failure.message if failure is not None else ""
    folded = _VARYING.sub("#", message)[:500]
    key = hashlib.sha256(f"{kind}\x00{folded}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return key, kind, message


async def failure_groups(store: Any) -> tuple[list[FailureGroup], int, bool]:
    """The groups (largest first), how many dead tasks were scanned, and whether that was all of them."""
    groups: dict[str, FailureGroup] = {}
    scanned, cursor, complete = 0, None, False
    while scanned < SCAN_LIMIT:
        page = await store.list(state=State.DEAD, cursor=cursor, limit=_PAGE, descending=True)
        for task in page.items:
            key, kind, message = _signature(task)
            group = groups.get(key)
            if group is None:
                group = groups[key] = FailureGroup(key=key, type=kind, message=message, sample=task.id)
            group.count += 1
            group.ids.append(task.id)
            group.kinds.add(task.kind)
            group.queues.add(task.queue)
            at = task.finished_at or task.updated_at
            group.first_seen = at if group.first_seen is None else min(group.first_seen, at)
            group.last_seen = at if group.last_seen is None else max(group.last_seen, at)
        scanned += len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            complete = True
            break
    return sorted(groups.values(), key=lambda g: (-g.count, g.type)), scanned, complete
