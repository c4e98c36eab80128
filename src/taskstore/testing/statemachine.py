"""A Hypothesis state machine that drives a store with random operations against a simple model.

The model is written here by hand, independently of ``taskstore.transitions``, so the two check each
other. After every step the store must agree with the model on every task's state, attempts and failed
attempts, a task holds a claim exactly when it is ``claimed``, and attempts never exceed ``max_attempts``.

    TestMemoryMachine = store_state_machine(lambda: "memory://").TestCase
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import taskstore
from taskstore import Claim, Failure, FakeClock, NewTask, State, Store, errors
from taskstore.retry import BinaryExponential
from taskstore.transitions import MAX_FAILURES_KEPT

R = TypeVar("R")
_POLICY = BinaryExponential(base=1.0, cap=4.0)  # deterministic backoff the model can predict


@dataclass
class _Model:
    seq: int
    max_attempts: int
    timeout: float
    state: State = State.QUEUED
    attempts: int = 0
    run_at: datetime | None = None
    token: str | None = None
    times_out_at: datetime | None = None
    cancel_requested: bool = False
    failures: list[tuple[int, str]] = field(default_factory=list)  # (attempt, failure type), oldest first

    def failed_attempt(self, failure_type: str) -> None:
        self.failures = [*self.failures, (self.attempts, failure_type)][-MAX_FAILURES_KEPT:]


def store_state_machine(
    url_factory: Callable[[], str], cleanup: Callable[[str], None] | None = None
) -> type[RuleBasedStateMachine]:
    """A state-machine class for stores opened on ``url_factory()`` (one fresh store per example)."""

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.clock = FakeClock()
            self.url = url_factory()
            self.store: Store = self.run(taskstore.open(self.url, clock=self.clock).connect())
            self.model: dict[str, _Model] = {}
            self.leases: list[Claim] = []  # every lease ever handed out, stale ones included
            self.next_seq = 0

        def run(self, coro: Any) -> Any:
            return self.runner.run(coro)

        def teardown(self) -> None:
            self.run(self.store.close())
            self.runner.close()
            if cleanup is not None:
                cleanup(self.url)

        # -- helpers ----------------------------------------------------------------------------

        def now(self) -> datetime:
            return self.clock.now()

        def _fail(self, m: _Model, failure_type: str) -> None:
            m.failed_attempt(failure_type)
            m.token = m.times_out_at = None
            if m.cancel_requested:  # a cancel requested while it ran: it is not tried again
                m.cancel_requested = False
                m.state = State.CANCELLED
                return
            if m.attempts < m.max_attempts:
                m.state = State.FAILED
                if failure_type == "timed_out":  # a lost lease: due again at once, in its old place
                    assert m.run_at is not None
                    m.run_at = min(m.run_at, self.now())
                else:
                    m.run_at = self.now() + timedelta(seconds=min(2.0 ** (m.attempts - 1), 4.0))
            else:
                m.state = State.DEAD

        def _expect_lease(self, lease: Claim) -> type[errors.TaskstoreError] | None:
            m = self.model[lease.task_id]
            if m.state is not State.CLAIMED:
                return errors.NotClaimed
            if m.token != lease.token:
                return errors.NotOwned
            return None

        def _lease_write(self, lease: Claim, call: Callable[[], Any]) -> bool:
            expected = self._expect_lease(lease)
            try:
                self.run(call())
            except errors.LeaseError as exc:
                assert expected is not None and isinstance(exc, expected), (exc, expected)
                return False
            assert expected is None, f"a write under a stale lease was accepted ({expected.__name__})"
            return True

        # -- rules ------------------------------------------------------------------------------

        @rule(n=st.integers(1, 4), max_attempts=st.integers(1, 3), timeout=st.sampled_from([5.0, 10.0]))
        def create(self, n: int, max_attempts: int, timeout: float) -> None:
            news = [
                NewTask("q", "k", {"i": i}, max_attempts=max_attempts, processing_timeout=timeout, retry=_POLICY)
                for i in range(n)
            ]
            for task in self.run(self.store.create_many(news)):
                self.next_seq += 1
                self.model[task.id] = _Model(
                    seq=self.next_seq, max_attempts=max_attempts, timeout=timeout, run_at=self.now()
                )

        def _timed_out(self) -> list[tuple[datetime, int, str]]:
            """The claimed tasks whose lease has ended, in claim order."""
            now = self.now()
            return sorted(
                (m.run_at, m.seq, task_id)
                for task_id, m in self.model.items()
                if m.state is State.CLAIMED and m.times_out_at is not None and m.times_out_at <= now
                if m.run_at is not None
            )

        @rule(limit=st.integers(1, 3))
        def claim(self, limit: int) -> None:
            now = self.now()
            # A claim first recovers up to ``limit`` of the leases that have ended (this store made every claim,
            # so it knows when the first one ends): they fail as timed out, and are due again at once.
            for _, _, task_id in self._timed_out()[:limit]:
                self._fail(self.model[task_id], "timed_out")
            ready = sorted(
                (m.run_at, m.seq, task_id)
                for task_id, m in self.model.items()
                if m.state in (State.QUEUED, State.FAILED) and m.run_at is not None and m.run_at <= now
            )
            got = self.run(self.store.claim("w", limit=limit))
            assert [t.id for t in got] == [task_id for _, _, task_id in ready[:limit]]
            for task in got:
                m = self.model[task.id]
                m.state, m.attempts, m.token = State.CLAIMED, m.attempts + 1, task.claim.token
                m.times_out_at = now + timedelta(seconds=m.timeout)
                m.cancel_requested = False
                self.leases.append(task.claim)

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def complete(self, data: st.DataObject) -> None:
            lease = data.draw(st.sampled_from(self.leases))
            if self._lease_write(lease, lambda: self.store.mark_done(lease, result="ok")):
                m = self.model[lease.task_id]
                m.state, m.token, m.times_out_at, m.cancel_requested = State.DONE, None, None, False

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def fail(self, data: st.DataObject) -> None:
            lease = data.draw(st.sampled_from(self.leases))
            if self._lease_write(lease, lambda: self.store.mark_failed(lease, Failure("Flaky"))):
                self._fail(self.model[lease.task_id], "Flaky")

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def unclaim(self, data: st.DataObject) -> None:
            lease = data.draw(st.sampled_from(self.leases))
            if self._lease_write(lease, lambda: self.store.unclaim(lease)):
                m = self.model[lease.task_id]
                if m.cancel_requested:
                    m.failed_attempt("cancelled")
                    m.state, m.token, m.times_out_at = State.CANCELLED, None, None
                else:
                    m.state, m.attempts, m.token, m.times_out_at = State.QUEUED, m.attempts - 1, None, None
                m.cancel_requested = False

        @precondition(lambda self: self.leases)
        @rule(data=st.data())
        def report_in(self, data: st.DataObject) -> None:
            lease = data.draw(st.sampled_from(self.leases))
            if self._lease_write(lease, lambda: self.store.report_in(lease)):
                m = self.model[lease.task_id]
                m.times_out_at = self.now() + timedelta(seconds=m.timeout)

        @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 6.0, 11.0]))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @rule()
        def reap(self) -> None:
            due = self._timed_out()
            assert self.run(self.store.reap()) == len(due)
            for _, _, task_id in due:
                self._fail(self.model[task_id], "timed_out")

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            task_id = data.draw(st.sampled_from(sorted(self.model)))
            m = self.model[task_id]
            task = self.run(self.store.cancel(task_id))
            if m.state in (State.QUEUED, State.FAILED):
                m.state = State.CANCELLED
            elif m.state is State.CLAIMED:
                m.cancel_requested = True
            assert task.state is m.state and task.cancel_requested == m.cancel_requested

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def retry(self, data: st.DataObject) -> None:
            task_id = data.draw(st.sampled_from(sorted(self.model)))
            m = self.model[task_id]
            self.run(self.store.retry(task_id))
            if m.state in (State.DEAD, State.CANCELLED):
                m.state, m.attempts, m.run_at = State.QUEUED, 0, self.now()
            elif m.state in (State.QUEUED, State.FAILED) and m.run_at is not None and m.run_at > self.now():
                m.run_at = self.now()

        # -- invariants -------------------------------------------------------------------------

        @invariant()
        def store_agrees_with_the_model(self) -> None:
            page = self.run(self.store.list(limit=1000))
            stored = {t.id: t for t in page.items}
            assert stored.keys() == self.model.keys()
            for task_id, m in self.model.items():
                task = stored[task_id]
                assert (task.state, task.attempts) == (m.state, m.attempts), (task_id, task, m)
                assert [(f.attempt, f.failure.type) for f in task.failures] == m.failures, (task_id, task, m)
                assert task.attempts <= task.max_attempts
                assert (task.claim is not None) == (task.state is State.CLAIMED)
                if task.claim is not None:
                    assert task.claim.token == m.token and task.claim.times_out_at == m.times_out_at
                if task.state in (State.QUEUED, State.FAILED):
                    assert task.run_at == m.run_at

        @invariant()
        def at_most_one_live_lease_per_task(self) -> None:
            accepted: dict[str, int] = {}
            for lease in self.leases:
                if self._expect_lease(lease) is None:
                    accepted[lease.task_id] = accepted.get(lease.task_id, 0) + 1
            assert all(n == 1 for n in accepted.values())

    return StoreMachine


def remove_sqlite_dir(url: str) -> None:
    """Cleanup for ``sqlite:////tmp/…/x.db`` URLs made by a temporary-directory factory."""
    path = url.removeprefix("sqlite:///")
    shutil.rmtree(path.rsplit("/", 1)[0], ignore_errors=True)


__all__ = ["remove_sqlite_dir", "store_state_machine"]
