"""Several OS processes on one store, and payload codecs."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest

from taskstore import NewTask, State, Store, SystemClock, Task, UndecodablePayload

from ._base import MULTIPROCESS, OpenStore, SuiteBase, create, new, run_python

# A claimer process: claims in batches until the queue stays empty, completes what it claimed,
# and prints the ids it got as one JSON list.
_CLAIMER = """
import asyncio, json, sys
import taskstore

async def main(url, worker):
    got = []
    async with taskstore.open(url) as store:
        idle = 0
        while idle < 3:
            batch = await store.claim(worker, ["proc"], limit=5, block_for=0.2)
            if not batch:
                idle += 1
                continue
            idle = 0
            got += [t.id for t in batch]
            await store.mark_done_many([(t.claim, worker) for t in batch])
    print(json.dumps(got))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

_PRODUCER = """
import asyncio, sys, time
import taskstore

async def main(url):
    async with taskstore.open(url) as store:
        await asyncio.sleep(0.3)
        await store.create(taskstore.NewTask("proc", "k", id="from-another-process"))

asyncio.run(main(sys.argv[1]))
"""


class ProcessTests(SuiteBase):
    # -- several processes ----------------------------------------------------------------------

    async def test_four_processes_never_share_a_task(self, open_store: OpenStore, store_url: str) -> None:
        self.need(MULTIPROCESS)
        store = await open_store(clock=SystemClock())
        tasks = await store.create_many([NewTask("proc", "k", {"i": i}) for i in range(400)])
        outputs = await asyncio.gather(*(run_python(_CLAIMER, store_url, f"proc-{i}") for i in range(4)))
        claimed = [task_id for out in outputs for task_id in json.loads(out)]
        counts = Counter(claimed)
        assert not [i for i, n in counts.items() if n > 1], "a task was claimed twice"
        assert set(claimed) == {t.id for t in tasks}
        assert await store.count(state=State.DONE) == 400

    async def test_a_blocked_claim_sees_a_task_from_another_process(
        self, open_store: OpenStore, store_url: str
    ) -> None:
        self.need(MULTIPROCESS)
        store = await open_store(clock=SystemClock())
        producer = asyncio.create_task(run_python(_PRODUCER, store_url))
        start = time.monotonic()
        got = await store.claim("w", ["proc"], limit=1, block_for=15)
        await producer
        assert [t.id for t in got] == ["from-another-process"]
        assert time.monotonic() - start < 10

    # -- codecs ---------------------------------------------------------------------------------

    async def test_a_payload_the_codec_cannot_decode_comes_back_marked(self, open_store: OpenStore) -> None:
        store = await open_store(codec=_FlakyCodec())
        task = await store.create(new(args="fine"))
        assert task.args == "fine"
        task = await store.create(new(args="poison"))
        got = await store.get(task.id)
        assert isinstance(got.args, UndecodablePayload) and "poison" in got.args.error
        claimed = await store.claim("w", limit=5)  # one bad payload never breaks a batch
        assert len(claimed) == 2

    async def test_tasks_are_frozen(self, store: Store) -> None:
        (task,) = await create(store)
        with pytest.raises(AttributeError):
            task.state = State.DONE  # type: ignore[misc]
        assert isinstance(task, Task)


class _FlakyCodec:
    """JSON that refuses to decode the string "poison"."""

    name = "flaky-json"

    def encode(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def decode(self, data: bytes) -> Any:
        value = json.loads(data)
        if value == "poison":
            raise ValueError("refusing to decode poison")
        return value
