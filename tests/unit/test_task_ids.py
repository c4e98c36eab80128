"""``task_ids(n)``, the batch of ids bulk enqueue makes at once: the ids ``task_id`` would have made."""

from __future__ import annotations

import time
import uuid

import pytest

from taskstore import _ids
from taskstore._ids import task_id, task_ids


def _check(ids: list[str]) -> None:
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for made in ids:
        parsed = uuid.UUID(made)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, made)


def test_batches_and_single_ids_keep_one_increasing_order() -> None:
    ids = [task_id(), *task_ids(5000), task_id(), *task_ids(1), *task_ids(3), task_id(), *task_ids(9000)]
    _check(ids)


def test_a_spent_counter_borrows_the_next_millisecond_in_a_batch_too(monkeypatch: pytest.MonkeyPatch) -> None:
    ahead = time.time_ns() // 1_000_000 + 50  # a millisecond already borrowed: the clock is behind it
    monkeypatch.setattr(_ids, "_last_ms", ahead)
    monkeypatch.setattr(_ids, "_counter", 0xFFD)
    ids = [*task_ids(5), task_id()]
    _check(ids)
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    counters = [(uuid.UUID(i).int >> 64) & 0xFFF for i in ids]
    assert stamps == [ahead, ahead, ahead + 1, ahead + 1, ahead + 1, ahead + 1]
    assert counters == [0xFFE, 0xFFF, 0, 1, 2, 3]


def test_a_batch_of_none() -> None:
    before = (_ids._last_ms, _ids._counter)
    assert task_ids(0) == []
    assert (_ids._last_ms, _ids._counter) == before
