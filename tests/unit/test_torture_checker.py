"""The torture suite's outside checker: each violation it exists to catch is caught, and the runs a
fault explains are not called duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.torture.checker import ChordExpect, Expect, Fault, Final, Run, check, read_wal

DONE = Expect(frozenset({"done"}))


def done(task_id: str, token: str, attempt: int, max_attempts: int = 10) -> Final:
    return Final(task_id, "torture.work", "done", attempt, max_attempts, {"token": token, "attempt": attempt})


def run(task_id: str, attempt: int, token: str, pid: int, start: float, outcome: str | None = "end") -> Run:
    return Run(task_id, attempt, token, pid, start, outcome)


def test_a_clean_run_has_no_violation() -> None:
    report = check({"a": done("a", "t1", 1)}, {"a": DONE}, [run("a", 1, "t1", 10, 1.0)], [])
    assert report.violations == dict.fromkeys(report.violations, 0)
    assert "lost=0 stale=0 dup_unexplained=0 stuck=0" in report.line("sqlite")


def test_missing_and_waiting_tasks_are_lost_and_claimed_ones_stuck() -> None:
    finals = {
        "waiting": Final("waiting", "torture.work", "queued", 0, 10),
        "retrying": Final("retrying", "torture.work", "failed", 1, 10),
        "held": Final("held", "torture.work", "claimed", 1, 10),
    }
    expected = dict.fromkeys(["gone", "waiting", "retrying", "held"], DONE)
    report = check(finals, expected, [], [], workers_stuck=1)
    assert (report.lost, report.stuck) == (3, 2)


def test_an_accepted_outcome_from_an_earlier_lease_is_stale() -> None:
    # The stopped worker's attempt 1 won although attempt 2 holds the lease.
    final = Final("a", "torture.work", "done", 2, 10, {"token": "t1", "attempt": 1})
    runs = [run("a", 1, "t1", 10, 1.0), run("a", 2, "t2", 11, 5.0)]
    stop = Fault("stop", 1.5, 8.0, pid=10)
    report = check({"a": final}, {"a": DONE}, runs, [stop])
    assert report.stale == 1
    assert report.dup_unexplained == 0


def test_an_outcome_no_run_logged_is_stale() -> None:
    report = check({"a": done("a", "forged", 1)}, {"a": DONE}, [run("a", 1, "t1", 10, 1.0)], [])
    assert report.stale == 1


def test_a_dead_task_is_judged_by_the_token_in_its_failure() -> None:
    doomed = Expect(frozenset({"dead"}), frozenset({"ValueError"}))
    final = Final("d", "torture.doomed", "dead", 3, 3, None, "ValueError", "doomed [token=t2 attempt=2]")
    runs = [run("d", a, f"t{a}", 10, float(a), "fail") for a in (1, 2, 3)]
    assert check({"d": final}, {"d": doomed}, runs, []).stale == 1


def test_a_rerun_needs_a_fault_or_a_failure_to_explain_it() -> None:
    runs = [run("a", 1, "t1", 10, 1.0), run("a", 2, "t2", 11, 2.0)]
    unexplained = check({"a": done("a", "t2", 2)}, {"a": DONE}, runs, [])
    assert (unexplained.dup_unexplained, unexplained.dup_explained) == (1, 0)
    killed = check({"a": done("a", "t2", 2)}, {"a": DONE}, runs, [Fault("kill", 1.5, 1.5, pid=10)])
    assert (killed.dup_unexplained, killed.dup_explained) == (0, 1)
    other_pid = check({"a": done("a", "t2", 2)}, {"a": DONE}, runs, [Fault("kill", 1.5, 1.5, pid=99)])
    assert other_pid.dup_unexplained == 1
    too_early = check({"a": done("a", "t2", 2)}, {"a": DONE}, runs, [Fault("kill", 0.5, 0.5, pid=10)])
    assert too_early.dup_unexplained == 1
    lock_holder = Fault("stop", 1.2, 4.0, pid=99, shared=True)
    assert check({"a": done("a", "t2", 2)}, {"a": DONE}, runs, [lock_holder]).dup_unexplained == 0
    everyone = check({"a": done("a", "t2", 2)}, {"a": DONE}, runs, [Fault("pg_terminate", 1.2, 4.0)])
    assert everyone.dup_unexplained == 0
    failed = [run("a", 1, "t1", 10, 1.0, "fail"), run("a", 2, "t2", 11, 2.0)]
    assert check({"a": done("a", "t2", 2)}, {"a": DONE}, failed, []).dup_unexplained == 0


def test_a_first_attempt_cut_by_its_timeout_explains_the_second() -> None:
    hang = Expect(frozenset({"done"}), first_attempt_times_out=True)
    runs = [run("h", 1, "t1", 10, 1.0, None), run("h", 2, "t2", 10, 2.5)]
    assert check({"h": done("h", "t2", 2)}, {"h": hang}, runs, []).dup_unexplained == 0


def test_attempts_or_runs_over_the_limit() -> None:
    runs = [run("a", a, f"t{a}", 10, float(a), "fail") for a in (1, 2, 3)]
    report = check({"a": done("a", "t3", 3, max_attempts=2)}, {"a": DONE}, runs, [])
    assert report.over_limit == 1


def test_an_end_its_handler_cannot_explain_is_unexpected() -> None:
    final = Final("a", "torture.work", "dead", 1, 10, None, "UnknownTaskKind", "no handler")
    assert check({"a": final}, {"a": DONE}, [], []).unexpected == 1
    bad_kind = Expect(frozenset({"dead"}), frozenset({"UnknownTaskKind"}))
    assert check({"a": final}, {"a": bad_kind}, [], []).unexpected == 0


def test_a_chord_counts_only_when_its_callback_saw_every_member() -> None:
    chord = ChordExpect("c0", "cb", [0, 10, 20])
    good = Final("cb", "torture.chord_total", "done", 1, 10, {"token": "t1", "attempt": 1, "values": [0, 10, 20]})
    runs = [Run("cb", 1, "t1", 10, 1.0, "end", [0, 10, 20])]
    assert check({"cb": good}, {"cb": DONE}, runs, [], [chord]).chords_ok == 1
    early = [Run("cb", 1, "t0", 10, 0.5, "end", [0, 10]), *runs]
    report = check({"cb": good}, {"cb": DONE}, early, [Fault("kill", 0.7, 0.7, pid=10)], [chord])
    assert (report.chords_ok, report.violations["chords_bad"]) == (0, 1)
    assert check({}, {}, [], [], [chord]).violations["chords_bad"] == 1


def test_a_task_dead_of_timeouts_is_expected_only_when_faults_cut_every_attempt() -> None:
    final = Final("a", "torture.work", "dead", 2, 2, None, "timed_out", "lease timed out")
    runs = [run("a", 1, "t1", 10, 1.0, None), run("a", 2, "t2", 11, 3.0, None)]
    both_killed = [Fault("kill", 2.0, 2.0, pid=10), Fault("kill", 4.0, 4.0, pid=11)]
    assert check({"a": final}, {"a": DONE}, runs, both_killed).unexpected == 0
    assert check({"a": final}, {"a": DONE}, runs, both_killed[:1]).unexpected == 1


def test_worker_crashes_are_violations() -> None:
    report = check({}, {}, [], [], crashes=["worker pid 7 exited on its own with code 3"])
    assert report.violations["crashed"] == 1


def _line(ev: str, token: str, **extra: object) -> str:
    return json.dumps({"ev": ev, "id": "a", "kind": "k", "attempt": 1, "token": token, "pid": 7, "t": 1.0, **extra})


def test_the_wal_pairs_starts_with_ends_and_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    lines = [_line("start", "t1"), _line("end", "t1", values=[1]), _line("start", "t2")]
    (tmp_path / "wal-7.jsonl").write_text("\n".join(lines) + '\n{"ev": "end", "id"')
    runs, torn = read_wal(tmp_path)
    assert torn == 1
    assert sorted((r.token, r.outcome, r.values) for r in runs) == [("t1", "end", [1]), ("t2", None, None)]


def test_a_torn_line_in_the_middle_of_a_wal_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "wal-7.jsonl").write_text(_line("start", "t1") + '\n{"ev": \n' + _line("end", "t1") + "\n")
    with pytest.raises(ValueError, match="Expecting"):
        read_wal(tmp_path)
