"""A Redis for the tests: the one named by $TASKSTORE_TEST_REDIS_URL, else a server answering on 127.0.0.1:6379,
else a ``redis-server`` from PATH started on a free port (no persistence) for the test run, else the tests
that need one skip with one line saying so.

Tests share the server with whatever else uses it: each test keeps its keys under a prefix of its own
(``new_prefix``) and deletes them afterwards (``drop_prefix``), never FLUSHDB.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

NO_REDIS = "no Redis: set TASKSTORE_TEST_REDIS_URL, run one on 127.0.0.1:6379, or put redis-server on PATH"


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A ``redis-server`` of the test's own: started, stopped (SHUTDOWN, so AOF is flushed) and started again."""

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", ""]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SHUTDOWN as an operator would (the server writes its AOF and exits), then wait for it."""
        if self.proc is None:
            return
        import redis

        with contextlib.suppress(redis.exceptions.ConnectionError):
            redis.Redis(port=self.port).shutdown(nosave=not self.appendonly)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def has_redis_server() -> bool:
    return shutil.which("redis-server") is not None


@contextlib.contextmanager
def test_redis() -> Iterator[str | None]:
    """The URL of a Redis for this test run, or None when there is none to be had."""
    url = os.environ.get("TASKSTORE_TEST_REDIS_URL") or None
    if url is not None:
        yield url
        return
    if _answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    if not has_redis_server():
        yield None
        return
    home = Path(tempfile.mkdtemp(prefix="taskstore-redis-"))
    server = RedisProcess(home)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def new_prefix() -> str:
    return f"tstest:{secrets.token_hex(6)}:"


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (the test's own)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
        while batch:
            client.delete(*batch[:1000])
            batch = batch[1000:]
    finally:
        client.close()


def with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"
