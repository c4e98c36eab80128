"""The outside checker: reads what the store says and what the handlers wrote, and counts violations.

It knows nothing of the worker's internals. Its inputs are the tasks as stored at the end (``Final``),
what each task was expected to end as (``Expect``), the handlers' write-ahead log (``Run``) and the
faults the driver caused (``Fault``). Every count in ``Report.violations`` must be 0:

- lost: a task the driver created that is missing, or still waiting (queued / failed) after the settle;
- stuck: a task still claimed after the settle, or a worker that did not exit on SIGTERM;
- crashed: a worker process that exited on its own (a worker never dies on a task's behalf);
- stale: a completion the store accepted from a run that did not hold the task's last lease
  (the run's attempt is not the task's final attempt, or no run logged that token);
- dup_unexplained: a task run again although its earlier run neither failed by design nor was hit by
  a fault (its process killed or stopped, the database's sessions cut) before the next run started;
- over_limit: more attempts spent or started than ``max_attempts``;
- unexpected: a task that ended in a state (or with a failure type) its handler cannot explain;
- chords_bad: a chord whose callback (or a chain whose last link) is not done with every result (``chords=ok/total``).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMED_OUT = "timed_out"
_TAG = re.compile(r"\[token=(?P<token>\S+) attempt=(?P<attempt>\d+)\]")


@dataclass(frozen=True)
class Final:
    """A task as the store has it at the end."""

    id: str
    kind: str
    state: str
    attempts: int
    max_attempts: int
    value: Any = None
    failure_type: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class Expect:
    """How a task may end: its states, and for ``dead`` the failure types its handler can produce."""

    states: frozenset[str]
    failure_types: frozenset[str] = frozenset()
    first_attempt_times_out: bool = False  # its first run is cut by the handler timeout, by design


@dataclass(frozen=True)
class Run:
    """One execution of a handler, from the write-ahead log."""

    task_id: str
    attempt: int
    token: str
    pid: int
    start: float
    outcome: str | None = None  # "end" (returned), "fail" (raised by design) or None (cut short)
    values: Any = None  # a chord callback's member values


@dataclass(frozen=True)
class Fault:
    """Something the driver did: ``kill`` / ``stop`` one process, or ``pg_terminate`` / ``pg_restart``.

    ``until`` is the end of its reach, which the driver sets past the fault itself where its effects
    outlast it (a resumed worker's claims, sessions that reconnect).
    """

    kind: str
    at: float
    until: float
    pid: int | None = None  # None: it hit every process
    shared: bool = False  # it hit its process, and through it every other (a lock it may hold)


@dataclass(frozen=True)
class ChordExpect:
    tag: str
    callback_id: str
    values: list[Any]


@dataclass
class Report:
    tasks: int = 0
    runs: int = 0
    lost: int = 0
    stuck: int = 0
    crashed: int = 0
    stale: int = 0
    dup_unexplained: int = 0
    dup_explained: int = 0
    late_ends: int = 0
    start_failures: int = 0  # workers that exited at start, unable to open the store (not a violation)
    over_limit: int = 0
    unexpected: int = 0
    chords_ok: int = 0
    chords_total: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def violations(self) -> dict[str, int]:
        return {
            "lost": self.lost,
            "stale": self.stale,
            "dup_unexplained": self.dup_unexplained,
            "stuck": self.stuck,
            "crashed": self.crashed,
            "over_limit": self.over_limit,
            "unexpected": self.unexpected,
            "chords_bad": self.chords_total - self.chords_ok,
        }

    def line(self, backend: str) -> str:
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (
            f"torture {backend}: tasks={self.tasks} runs={self.runs} lost={self.lost} stale={self.stale} "
            f"dup_unexplained={self.dup_unexplained} stuck={self.stuck} crashed={self.crashed} "
            f"over_limit={self.over_limit} "
            f"unexpected={self.unexpected} chords={self.chords_ok}/{self.chords_total} "
            f"(dup_explained={self.dup_explained} late_ends={self.late_ends} "
            f"start_failures={self.start_failures} {faults})"
        )

    def note(self, problem: str) -> None:
        if len(self.problems) < 40:
            self.problems.append(problem)


def read_wal(directory: Path) -> tuple[list[Run], int]:
    """The runs in every ``wal-*.jsonl`` file, and how many lines were torn (only a file's last may be)."""
    starts: dict[tuple[str, str], dict[str, Any]] = {}
    ends: dict[tuple[str, str], dict[str, Any]] = {}
    torn = 0
    for path in sorted(directory.glob("wal-*.jsonl")):
        lines = path.read_bytes().split(b"\n")
        for n, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                torn += 1
                if n != len(lines) - 1:  # a SIGKILL tears only the last write of a file
                    raise
                continue
            key = (line["id"], line["token"])
            (starts if line["ev"] == "start" else ends)[key] = line
    runs = [
        Run(
            task_id=s["id"],
            attempt=s["attempt"],
            token=s["token"],
            pid=s["pid"],
            start=s["t"],
            outcome=ends[key]["ev"] if key in ends else None,
            values=ends[key].get("values") if key in ends else None,
        )
        for key, s in starts.items()
    ]
    return runs, torn


def check(
    finals: Mapping[str, Final],
    expected: Mapping[str, Expect],
    runs: Iterable[Run],
    faults: Sequence[Fault],
    chords: Sequence[ChordExpect] = (),
    workers_stuck: int = 0,
    crashes: Sequence[str] = (),
) -> Report:
    report = Report(tasks=len(expected), chords_total=len(chords))
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_task[run.task_id].append(run)
        report.runs += 1
    for kind in sorted({f.kind for f in faults}):
        report.faults[kind] = sum(1 for f in faults if f.kind == kind)
    report.stuck += workers_stuck
    if workers_stuck:
        report.note(f"{workers_stuck} worker(s) did not exit on SIGTERM")
    report.crashed = len(crashes)
    for crash in crashes:
        report.note(crash)
    for task_id, expect in expected.items():
        task_runs = sorted(by_task.get(task_id, []), key=lambda r: (r.attempt, r.start))
        final = finals.get(task_id)
        if final is None:
            report.lost += 1
            report.note(f"{task_id}: missing from the store")
            continue
        _check_state(report, final, expect, task_runs, faults)
        _check_stale(report, final, task_runs)
        _check_limit(report, final, task_runs)
        _check_duplicates(report, final, expect, task_runs, faults)
    for chord in chords:
        _check_chord(report, chord, finals.get(chord.callback_id), by_task.get(chord.callback_id, []))
    return report


def _check_state(report: Report, final: Final, expect: Expect, runs: Sequence[Run], faults: Sequence[Fault]) -> None:
    if final.state in ("queued", "failed"):
        report.lost += 1
        report.note(f"{final.id} ({final.kind}): still {final.state} after the settle")
    elif final.state == "claimed":
        report.stuck += 1
        report.note(f"{final.id} ({final.kind}): still claimed after the settle")
    elif _worn_out(final, runs, faults):
        pass  # the retry limit doing its job: a fault cut every attempt
    elif final.state not in expect.states or (final.state == "dead" and final.failure_type not in expect.failure_types):
        report.unexpected += 1
        report.note(f"{final.id} ({final.kind}): ended {final.state} ({final.failure_type}: {final.failure_message})")


def _check_stale(report: Report, final: Final, runs: Sequence[Run]) -> None:
    """The accepted outcome must come from the run that holds the final attempt's lease."""
    if final.state == "done":
        value = final.value if isinstance(final.value, dict) else {}
        token, attempt = value.get("token"), value.get("attempt")
    elif final.state == "dead" and final.failure_message and (m := _TAG.search(final.failure_message)):
        token, attempt = m["token"], int(m["attempt"])
    else:
        return
    # Runs that returned but are not the accepted one: the fencing had something to refuse.
    report.late_ends += sum(1 for r in runs if r.outcome == "end" and r.token != token)
    if attempt != final.attempts or not any(r.token == token and r.attempt == attempt for r in runs):
        report.stale += 1
        report.note(
            f"{final.id}: accepted the outcome of token {token} attempt {attempt}, "
            f"but the task's final attempt is {final.attempts} (runs: {[(r.attempt, r.token) for r in runs]})"
        )


def _check_limit(report: Report, final: Final, runs: Sequence[Run]) -> None:
    highest = max((r.attempt for r in runs), default=0)
    if final.attempts > final.max_attempts or highest > final.max_attempts or len(runs) > final.max_attempts:
        report.over_limit += 1
        report.note(f"{final.id}: {final.attempts} attempts, {len(runs)} runs, max_attempts {final.max_attempts}")


def _check_duplicates(
    report: Report, final: Final, expect: Expect, runs: Sequence[Run], faults: Sequence[Fault]
) -> None:
    if len(runs) < 2:
        return
    for run, after in itertools.pairwise(runs):
        if not _explained(run, after, expect, faults):
            report.dup_unexplained += 1
            report.note(
                f"{final.id} ({final.kind}): attempt {run.attempt} in pid {run.pid} ({run.outcome or 'cut short'}) "
                f"ran again as attempt {after.attempt} in pid {after.pid} {after.start - run.start:.2f}s later "
                "with no fault to explain it"
            )
            return
    report.dup_explained += 1


def _explained(run: Run, after: Run, expect: Expect, faults: Sequence[Fault]) -> bool:
    if run.outcome == "fail" or (expect.first_attempt_times_out and run.attempt == 1):
        return True
    return _hit(run, after.start, faults)


def _hit(run: Run, end: float, faults: Sequence[Fault]) -> bool:
    """A fault reached this run's process between its start and ``end`` (a stop that ended before the
    run started could not have touched it)."""
    return any(
        fault.at <= end and fault.until >= run.start
        for fault in faults
        if fault.pid is None or fault.pid == run.pid or fault.shared
    )


def _worn_out(final: Final, runs: Sequence[Run], faults: Sequence[Fault]) -> bool:
    """Dead of lease timeouts, every attempt cut by a fault: the retry limit doing its job."""
    if final.state != "dead" or final.failure_type != TIMED_OUT or not runs:
        return False
    ends = [after.start for after in runs[1:]] + [float("inf")]
    return all(_hit(run, end, faults) for run, end in zip(runs, ends, strict=True))


def _check_chord(report: Report, chord: ChordExpect, callback: Final | None, runs: Sequence[Run]) -> None:
    early = [r for r in runs if r.outcome == "end" and r.values != chord.values]
    value = callback.value if callback is not None and isinstance(callback.value, dict) else {}
    if callback is None or callback.state != "done" or value.get("values") != chord.values or early:
        state = "missing" if callback is None else callback.state
        report.note(f"chord {chord.tag}: callback {state}, values {value.get('values')}, early runs {len(early)}")
        return
    report.chords_ok += 1
