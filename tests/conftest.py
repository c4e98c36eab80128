"""Shared test configuration: Hypothesis profiles (CI runs the state machine with more examples)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def postgres_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL database for this test run (see tests/postgres_server.py)."""
    from .postgres_server import test_database

    with test_database(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    """A Redis for this test run, None when there is none (see tests/redis_server.py); tests use key prefixes."""
    from .redis_server import test_redis

    with test_redis() as url:
        yield url


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torture", "the torture suite (tests/torture)")
    group.addoption("--torture-long", action="store_true", help="run the torture suite for minutes, not seconds")
    group.addoption("--torture-seed", type=int, default=None, help="replay a torture run's random choices")
    group.addoption(
        "--torture-features",
        default="all",
        help="torture scenarios on top of the base load: comma-separated exit, sync_hang, nul, chord_faults, chains; "
        "all (the default) or none",
    )
