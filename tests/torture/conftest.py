"""The torture suite's settings: a short form by default (CI), minutes with ``--torture-long``."""

from __future__ import annotations

import pytest

SHORT_TIMEOUT = 240.0
LONG_TIMEOUT = 1800.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A run's length is an option, so its time limit is too: a hung short run fails in minutes.
    limit = LONG_TIMEOUT if config.getoption("--torture-long") else SHORT_TIMEOUT
    for item in items:
        if item.get_closest_marker("torture") is not None:
            item.add_marker(pytest.mark.timeout(limit))
