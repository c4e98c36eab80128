"""The conformance suite against the memory backend."""

from __future__ import annotations

import pytest

from taskstore.testing import ConformanceSuite


class TestMemory(ConformanceSuite):
    # One process, one store per URL: no shared handles, no other processes, no transactions to join.
    capabilities = frozenset()

    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"
