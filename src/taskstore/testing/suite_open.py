"""Opening a store: ``create=False`` (what read-only tools use) finds a store or says there is none."""

from __future__ import annotations

import pytest

from taskstore import State, errors

from ._base import SHARED, OpenStore, SuiteBase, create


class OpenTests(SuiteBase):
    async def test_opening_without_create_makes_no_store(self, open_store: OpenStore) -> None:
        self.need(SHARED)  # a memory:// store lives and dies with its process: there is nothing to find
        with pytest.raises(errors.ConfigError, match="no taskstore store"):
            await open_store(create=False)
        with pytest.raises(errors.ConfigError, match="no taskstore store"):
            await open_store(create=False)  # the failed open left nothing behind
        (task,) = await create(await open_store())
        reader = await open_store(create=False)
        assert (await reader.get(task.id)).state is State.QUEUED
