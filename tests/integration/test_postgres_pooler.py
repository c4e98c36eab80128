"""LISTEN that does not stick: behind a pooler in transaction mode notifications never arrive. The driver's
probe notices, says so once, and blocked claimers poll by themselves.

Two ways: a driver that drops every notification (as such a pooler does), and a real PgBouncer in
transaction mode in front of the test server, with a ``taskstore worker`` behind it (skipped, saying why,
where the ``pgbouncer`` binary is missing: ``apt-get install pgbouncer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

import taskstore
from taskstore import NewTask, State
from taskstore.backends.postgres import PostgresDriver
from taskstore.backends.postgres import driver as postgres
from taskstore.health import Level
from taskstore.store import Store

from ..postgres_server import new_schema, with_schema

ROOT = Path(__file__).resolve().parents[2]


class Deaf(PostgresDriver):
    """A driver whose LISTEN hears nothing while ``deaf``: every notification is dropped."""

    deaf = True

    def _heard(self, channel: str, payload: str) -> None:
        if not self.deaf:
            super()._heard(channel, payload)


async def _until(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not (condition() if callable(condition) else condition):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_lost_notifications_make_claimers_poll_with_one_warning(
    postgres_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(postgres, "PROBE_TIMEOUT", 0.5)
    monkeypatch.setattr(postgres, "PROBE_EVERY", 0.2)
    caplog.set_level(logging.INFO, logger="taskstore.postgres")
    driver = Deaf(postgres_db, None, schema=new_schema())
    # A claimer that trusts its wake-ups looks again only every 5 s.
    async with Store(driver, poll_interval=5.0) as store:
        health = await store.health()
        assert driver.notifications_lost
        lost = next(f for f in health.findings if f.name == "notify_latency")
        assert lost.level is Level.WARN
        assert "transaction mode" in lost.advice

        async def enqueue_behind_its_back() -> None:
            await asyncio.sleep(0.3)
            async with await psycopg.AsyncConnection.connect(postgres_db) as conn, conn.transaction():
                await store.create_many([NewTask("q", "k", id="t-1")], conn=conn)  # wakes nobody here

        started = time.monotonic()
        producer = asyncio.ensure_future(enqueue_behind_its_back())
        got = await store.claim("w", ["q"], limit=1, block_for=4.0)
        await producer
        assert [t.id for t in got] == ["t-1"]
        assert time.monotonic() - started < 1.5  # found by polling every 0.05 s, not after 4-5 s

        await asyncio.sleep(0.8)  # several more probes fail: still one warning
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        message = warnings[0].getMessage()
        assert "transaction mode" in message
        assert "session mode" in message
        assert "poll every 0.05s" in message

        driver.deaf = False  # the pooler was fixed: the next probe comes back
        await _until(lambda: not driver.notifications_lost)
        assert any("hears notifications again" in r.getMessage() for r in caplog.records)
        health = await store.health()
        assert next(f for f in health.findings if f.name == "notify_latency").level is Level.OK


@pytest.mark.asyncio
async def test_notifications_that_arrive_keep_the_normal_poll(postgres_db: str) -> None:
    async with taskstore.open(with_schema(postgres_db, new_schema())) as store:
        health = await store.health()
        assert not store._driver.notifications_lost  # type: ignore[attr-defined]
        latency = next(f for f in health.findings if f.name == "notify_latency")
        assert latency.level is Level.OK
        assert isinstance(latency.value, float)
        assert latency.value < postgres.PROBE_TIMEOUT


# -- a real PgBouncer in transaction mode ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@pytest.fixture
def pgbouncer(postgres_db: str) -> Iterator[str]:
    """PgBouncer with pool_mode=transaction in front of the test database; its URL."""
    binary = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        pytest.skip("no pgbouncer binary (apt-get install pgbouncer): the transaction-mode pooler test needs one")
    server = urlsplit(postgres_db)
    if not server.hostname or server.hostname.startswith("/"):
        pytest.skip(f"the test server is not reached over TCP ({postgres_db}): PgBouncer is set up for TCP here")
    user = unquote(server.username or "postgres")
    dbname = server.path.lstrip("/")
    home = Path(tempfile.mkdtemp(prefix="taskstore-pgbouncer-"))
    home.chmod(0o755)  # run as root, PgBouncer refuses root and runs as nobody, who must read this
    port = _free_port()
    password = f" password={unquote(server.password)}" if server.password else ""
    (home / "users.txt").write_text(f'"{user}" ""\n')
    (home / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={server.hostname} port={server.port or 5432} user={user}{password}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {home / 'users.txt'}\npool_mode = transaction\ndefault_pool_size = 4\n"
        # taskstore sends options=-c TimeZone=UTC; PgBouncer 1.18 refuses startup parameters it does not know
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (home / name).chmod(0o644)
    log = (home / "pgbouncer.log").open("w")
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([binary, *as_user, str(home / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            assert proc.poll() is None, (home / "pgbouncer.log").read_text()
            assert time.monotonic() < deadline, "pgbouncer did not start listening"
            time.sleep(0.05)
        yield f"postgresql://{user}@127.0.0.1:{port}/{dbname}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_worker_behind_pgbouncer_in_transaction_mode_drains_promptly(
    pgbouncer: str, postgres_db: str, tmp_path: Path
) -> None:
    schema = new_schema()
    direct = with_schema(postgres_db, schema)
    async with taskstore.open(direct):
        pass  # the schema exists before the worker starts
    # PgBouncer 1.18 keeps no prepared statements across transactions: prepare_threshold=none. A claimer that
    # waited for notifications would look again only every 5 s (poll_interval): it must poll by itself.
    behind = f"{with_schema(pgbouncer, schema)}&prepare_threshold=none&poll_interval=5"
    err_path = tmp_path / "worker.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskstore", "worker", "tests.integration.pooler_app:app", "--url", behind,
             "--concurrency", "2"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ},
        )  # fmt: skip
        try:
            await _until(lambda: "hears nothing" in err_path.read_text() or proc.poll() is not None, 30)
            assert proc.poll() is None, err_path.read_text()
            latencies = []
            async with taskstore.open(direct) as store:
                for _ in range(12):
                    started = time.monotonic()
                    task = await store.create(NewTask("pooler", "pooler.noop"))
                    while (await store.get(task.id)).state is not State.DONE:
                        assert time.monotonic() - started < 10, err_path.read_text()
                        await asyncio.sleep(0.01)
                    latencies.append(time.monotonic() - started)
                    await asyncio.sleep(0.2)  # the worker is blocked in its claim again
            # Polling every 0.05 s: about 0.05 s each. Without it the worker would still find each task within its
            # claim_wait (0.5 s: it claims again after each wait), 0.25 s on average.
            assert max(latencies) < 1.5, latencies
            assert sum(latencies) / len(latencies) < 0.15, latencies
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    log = err_path.read_text()
    assert proc.returncode == 0, log
    assert log.count("hears nothing") == 1, log
    assert "transaction mode" in log
    assert "Traceback" not in log
