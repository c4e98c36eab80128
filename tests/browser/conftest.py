"""A real `taskstore serve` process and a real Chromium (Debian's package, driven by Playwright for Python).

Playwright's own browser download is not reachable here, so the tests launch the system's ``chromium`` by
path; without it (or without the playwright package) they are skipped with one line saying which is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    url: str
    process: subprocess.Popen[bytes]
    admin: str = "admin:admin-secret-1"
    reader: str = "read:reader-secret-1"
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("dash") / "store.db"
    url = f"sqlite:///{store}"
    port = _free_port()
    cmd = [
        sys.executable, "-m", "taskstore", "serve", "--url", url, "--port", str(port), "--log-level", "warning",
        "--token", "admin:admin-secret-1", "--token", "read:reader-secret-1",
    ]  # fmt: skip
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/openapi.json", timeout=1).close()
            break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise RuntimeError(f"taskstore serve did not start: {Path(log.name).read_text()}") from exc
            time.sleep(0.1)
    try:
        yield Server(base, url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if CHROMIUM is None:
        pytest.skip("no chromium command: install Debian's chromium package (.ci/run does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A logged-in admin page that records every console error and page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: d.accept())
    login(pg, server, server.admin.split(":", 1)[1])
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


def login(pg: Any, server: Server, secret: str) -> None:
    pg.goto(f"{server.base}/login")
    pg.fill("input[name=token]", secret)
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{server.base}/")


def api(server: Server, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    import json

    secret = (token or server.admin).split(":", 1)[1]
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{server.base}/api/v1{path}",
        data=data,
        method=method,
        headers={"content-type": "application/json", "authorization": f"Bearer {secret}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None
