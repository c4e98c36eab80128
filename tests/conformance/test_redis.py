"""The conformance suite against the Redis backend (a real server; see tests/redis_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskstore.testing import MULTIPROCESS, SHARED, ConformanceSuite

from ..redis_server import NO_REDIS, drop_prefix, new_prefix, with_prefix


class TestRedis(ConformanceSuite):
    # No JOIN_TRANSACTION: Redis cannot take part in the caller's SQL transaction.
    capabilities = frozenset({SHARED, MULTIPROCESS})

    @pytest.fixture
    def store_url(self, redis_url: str | None) -> Iterator[str]:
        if redis_url is None:
            pytest.skip(NO_REDIS)
        prefix = new_prefix()
        yield with_prefix(redis_url, prefix)
        drop_prefix(redis_url, prefix)
