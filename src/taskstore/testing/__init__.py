"""Testing: helpers for apps' unit tests, and the conformance suite every backend passes.

For code that enqueues tasks (no pytest needed; fixtures in ``taskstore.testing.plugin``):

    from taskstore.testing import drain, run_until_complete

    app.configure(url="memory://", clock=FakeClock())   # or App(..., eager=True) to run at enqueue
    handle = await send.enqueue("a@b")
    await drain(app)                                     # runs every due task in this process
    assert await run_until_complete(app, handle) is True # and moves the FakeClock through retries

For a backend, the conformance suite (needs pytest, pytest-asyncio and hypothesis: ``taskstore[test]``;
imported only when one of its names is asked for):

    from taskstore.testing import ConformanceSuite

    class TestMyBackend(ConformanceSuite):
        capabilities = frozenset({SHARED, MULTIPROCESS})

        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mybackend:///{tmp_path}/db"
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .apps import (
    NeverFinishes,
    TooManyTasks,
    drain,
    drain_sync,
    run_until_complete,
    run_until_complete_sync,
)

if TYPE_CHECKING:
    from ._base import JOIN_TRANSACTION, MULTIPROCESS, SHARED
    from .conformance import ConformanceSuite

_SUITE_NAMES = {
    "ConformanceSuite": ".conformance",
    "JOIN_TRANSACTION": "._base",
    "MULTIPROCESS": "._base",
    "SHARED": "._base",
}


def __getattr__(name: str) -> Any:
    """The conformance suite's names, imported on first use (they need pytest and hypothesis)."""
    module = _SUITE_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "JOIN_TRANSACTION",
    "MULTIPROCESS",
    "SHARED",
    "ConformanceSuite",
    "NeverFinishes",
    "TooManyTasks",
    "drain",
    "drain_sync",
    "run_until_complete",
    "run_until_complete_sync",
]
