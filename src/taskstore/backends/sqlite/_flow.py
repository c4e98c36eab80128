"""Flow control on SQLite (SPEC §9): which tasks a claim may take, and which rows a unique insert skips.

Everything here runs inside the caller's write transaction (or, for ``find_available``, a read), so
SQLite's single writer lock is what makes a key's running count and bucket, or a unique key's holder,
still true when the claim or insert is written.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ... import gates, transitions
from ...backend import NewRow
from ...gates import KeyGate
from ...model import Task
from .._records import limit_from_row
from ._queries import Q
from ._rows import from_us, task_from_row, to_us

# How many times a claim scans again past keys that became full. Each round excludes every key found
# full so far, so a few rounds get past as many hot keys as a claim is likely to meet at the head.
_RESCANS = 8
# A rescan reads at least this many candidates: a claim of 1 behind many full keys needs a wider look.
_RESCAN_WINDOW = 64

Candidate = tuple[int, int, int, "str | None"]  # priority, run_at (µs), seq, concurrency_key


def _order(c: Candidate) -> tuple[int, int, int]:
    return (-c[0], c[1], c[2])


@dataclass(slots=True)
class Choice:
    """The seqs a claim takes, in claim order, and the gates it drew on (to write back)."""

    seqs: list[int]
    gates: dict[str, KeyGate] = field(default_factory=dict)


def scan(
    conn: sqlite3.Connection,
    queues: Sequence[str],
    limit: int,
    now_us: int,
    past: tuple[str, str] | None = None,
) -> list[Candidate]:
    """Candidates in claim order: claimable, not expired, outside paused queues (and past ``past``:
    the JSON arrays of seqs already decided and of full keys)."""
    params: dict[str, Any] = {"now": now_us, "limit": limit}
    if past is not None:
        params["skip"], params["full"] = past
    if not queues:
        return conn.execute(Q["candidates_any" if past is None else "more_candidates_any"], params).fetchall()
    name = "candidates_in_queue" if past is None else "more_candidates_in_queue"
    found: list[Candidate] = []
    for queue in dict.fromkeys(queues):
        found += conn.execute(Q[name], {**params, "queue": queue}).fetchall()
    # One indexed scan per queue, each in claim order: merge them.
    return found if len(queues) == 1 else heapq.nsmallest(limit, found, key=_order)


def key_gates(conn: sqlite3.Connection, keys: Iterable[str]) -> dict[str, KeyGate]:
    """The gate of each key that has a limit, with its claimed tasks counted now."""
    rows = conn.execute(Q["key_gates"], (json.dumps(sorted(keys)),)).fetchall()
    return {r[0]: gate_from_row(r) for r in rows}


def gate_from_row(r: Any) -> KeyGate:
    return KeyGate(limit=limit_from_row(r), running=r[6], tokens=r[4], refilled_at=from_us(r[5]))


def choose(conn: sqlite3.Connection, queues: Sequence[str], want: int, now: datetime) -> Choice:
    """What a claim of ``want`` takes now. Without a limited key among the candidates this is one scan."""
    now_us = to_us(now)
    candidates = scan(conn, queues, want, now_us)
    keys = {c[3] for c in candidates if c[3] is not None}
    if not keys:
        return Choice([c[2] for c in candidates])
    found = key_gates(conn, keys)
    if not found:
        return Choice([c[2] for c in candidates])
    seen = set(keys)
    chosen: list[Candidate] = []
    full: set[str] = set()
    window = want
    for _ in range(_RESCANS + 1):
        picked, now_full = gates.pick([c[3] for c in candidates], found, now, want - len(chosen))
        chosen += [candidates[i] for i in picked]
        full |= now_full
        if len(chosen) >= want or len(candidates) < window:
            break  # enough, or every candidate was seen
        # pick passes over only the tasks of full keys: what is left lies past them and past the chosen.
        window = max(want - len(chosen), _RESCAN_WINDOW)
        past = (json.dumps([c[2] for c in chosen]), json.dumps(sorted(full)))
        candidates = scan(conn, queues, window, now_us, past)
        new_keys = {c[3] for c in candidates if c[3] is not None} - seen
        if new_keys:
            seen |= new_keys
            found.update(key_gates(conn, new_keys))
    chosen.sort(key=_order)
    return Choice([c[2] for c in chosen], found)


def draw(conn: sqlite3.Connection, drawn: Iterable[KeyGate]) -> None:
    """Write back the buckets a claim took tokens from."""
    rows = [(g.tokens, to_us(g.refilled_at), g.limit.key) for g in drawn if g.drawn > 0]
    if rows:
        conn.executemany(Q["draw_tokens"], rows)


@dataclass(slots=True)
class Dedupe:
    """A batch with unique keys, resolved against the stored holders.

    ``insert`` are the rows to insert; ``taken[i]`` is row ``i``'s existing task (a stored holder, its
    ``args`` still encoded) or None; ``same_as[i]`` the index of an earlier row of the batch whose task
    row ``i`` gets; ``released`` the holders past ``unique_for`` to write back released.
    """

    insert: list[NewRow]
    taken: list[Task | None]
    same_as: list[int | None]
    released: list[tuple[Task, Task]]


def dedupe(conn: sqlite3.Connection, rows: Sequence[NewRow], now: datetime) -> Dedupe:
    pairs = sorted({(r.new.queue, r.new.unique_key) for r in rows if r.new.unique_key is not None})
    holders: dict[tuple[str, str | None], Task] = {}
    released: list[tuple[Task, Task]] = []
    for row in conn.execute(Q["key_holders"], (json.dumps(pairs),)):
        task = task_from_row(row)
        if transitions.holds_key(task, now):
            holders[(task.queue, task.unique_key)] = task
        else:  # past unique_for: it gives the key up to this create, in this transaction
            released.append((task, transitions.release_key(task, now)))
    insert: list[NewRow] = []
    taken: list[Task | None] = []
    same_as: list[int | None] = []
    first: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        key = row.new.unique_key
        holder = None if key is None else holders.get((row.new.queue, key))
        earlier = None if key is None else first.get((row.new.queue, key))
        taken.append(holder)
        same_as.append(earlier)
        if holder is None and earlier is None:
            insert.append(row)
            if key is not None:
                first[(row.new.queue, key)] = i
    return Dedupe(insert, taken, same_as, released)


def assemble(rows: Sequence[NewRow], plan: Dedupe, created: Sequence[Task]) -> list[Task]:
    """One task per row: the created ones in order, the holders, and an earlier row's task for a repeat
    (with its payload encoded, as a holder comes back: the store decodes every task whose id is not its row's)."""
    made = iter(created)
    out: list[Task] = []
    for holder, earlier in zip(plan.taken, plan.same_as, strict=True):
        if holder is not None:
            out.append(holder)
        elif earlier is not None:
            out.append(out[earlier].replace(args=rows[earlier].args))
        else:
            out.append(next(made))
    return out


__all__ = ["Choice", "Dedupe", "assemble", "choose", "dedupe", "draw", "gate_from_row", "key_gates", "scan"]
