"""Dead tasks grouped by what killed them: failure type and message, with counts and first/last seen.

The store has no index over failure text, so the groups are built from a bounded scan of the newest dead
tasks (``SCAN_LIMIT``, along the index of dead tasks, reading no payloads: ``store.dead_summaries``); the page
says when the scan did not reach the end. Numbers, ids and hex in messages
often differ between otherwise identical failures ("timeout after 30.2 s", "row 1234"), so they are folded
into ``#`` for grouping while the first message is shown as it was.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...model import DeadSummary

SCAN_LIMIT = 10_000
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


def _signature(dead: DeadSummary) -> tuple[str, str, str]:
    kind = dead.type or "(no failure recorded)"
    folded = _VARYING.sub("#", dead.message)[:500]
    key = hashlib.sha256(f"{kind}\x00{folded}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return key, kind, dead.message


async def failure_groups(store: Any) -> tuple[list[FailureGroup], int, bool]:
    """The groups (largest first), how many dead tasks were scanned, and whether that was all of them."""
    groups: dict[str, FailureGroup] = {}
    found = await store.dead_summaries(SCAN_LIMIT + 1)  # one more than scanned: is there anything past it?
    for dead in found[:SCAN_LIMIT]:
        key, kind, message = _signature(dead)
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(key=key, type=kind, message=message, sample=dead.id)
        group.count += 1
        group.ids.append(dead.id)
        group.kinds.add(dead.kind)
        group.queues.add(dead.queue)
        if dead.finished_at is not None:
            at = dead.finished_at
            group.first_seen = at if group.first_seen is None else min(group.first_seen, at)
            group.last_seen = at if group.last_seen is None else max(group.last_seen, at)
    scanned = min(len(found), SCAN_LIMIT)
    return sorted(groups.values(), key=lambda g: (-g.count, g.type)), scanned, len(found) <= SCAN_LIMIT
