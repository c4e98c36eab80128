"""Tokens and roles: every endpoint's role enforced, loopback only without tokens, secrets never shown."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskstore import errors
from taskstore.cli import main
from taskstore.web import create_app
from taskstore.web.api import ENDPOINTS
from taskstore.web.auth import Role, Token, parse_tokens, tokens_from_env
from taskstore.web.routes import Endpoint

from .conftest import ADMIN, READ, TOKENS, WORKER, Api, bearer, plain

BY_ROLE = {Role.READ: READ, Role.WORKER: WORKER, Role.ADMIN: ADMIN}


def _url(endpoint: Endpoint) -> str:
    return "/api/v1" + re.sub(r"{\w+}", "some-id", endpoint.path)


def _call(client: TestClient, endpoint: Endpoint, headers: dict[str, str] | None = None) -> Any:
    if endpoint.method == "GET":
        return client.get(_url(endpoint), headers=headers)
    return client.post(_url(endpoint), json={}, headers=headers)


@pytest.mark.parametrize("endpoint", plain(ENDPOINTS), ids=lambda e: e.name)
def test_each_endpoint_enforces_its_role(secured: Api, endpoint: Endpoint) -> None:
    client = secured.client
    for headers in (None, {"Authorization": "Bearer not-a-configured-token"}, {"Authorization": "Basic abc"}):
        response = _call(client, endpoint, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "Unauthorized"
    assert endpoint.role is not None
    for role, token in BY_ROLE.items():
        response = _call(client, endpoint, bearer(token))
        if role < endpoint.role:
            assert response.status_code == 403, (role, response.text)
            assert response.json()["type"] == "Forbidden"
        else:
            assert response.status_code not in (401, 403), (role, response.text)


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Bearer", 401),
        ("Bearer ", 401),
        ("Token admin-secret-1", 401),
        ("Bearer admin-secret-", 401),  # a prefix of a token
        ("Bearer admin-secret-1x", 401),
        ("Bearer \xff\xfe", 401),  # not UTF-8 (headers travel as latin-1)
        ("Bearer " + "x" * 50_000, 401),
        ("bearer admin-secret-1", 200),  # the scheme is case-insensitive (RFC 9110 §11.1)
        ("Bearer admin-secret-1 ", 200),
    ],
)
def test_authorization_header_variants(secured: Api, header: str, status: int) -> None:
    response = secured.client.get("/api/v1/queues", headers={b"Authorization": header.encode("latin-1")})
    assert response.status_code == status, response.text


def test_the_roles_of_the_table() -> None:
    """The split SPEC §10 and the issue describe: reads for read, work for worker, operations for admin."""
    roles = {e.name: e.role for e in ENDPOINTS}
    assert {n for n, r in roles.items() if r is Role.ADMIN} == {
        "cancel_task", "retry_task", "pause_queue", "resume_queue",
    }  # fmt: skip
    assert {n for n, r in roles.items() if r is Role.WORKER} == {
        "create_tasks", "claim", "report", "done", "fail", "unclaim", "cancelled", "completions",
    }  # fmt: skip


def test_the_openapi_document_needs_no_token(secured: Api) -> None:
    assert secured.client.get("/api/openapi.json").status_code == 200


@pytest.fixture
def open_app(sqlite_url: str) -> Any:
    return create_app(sqlite_url, tokens=())


def test_without_tokens_only_loopback_is_served(open_app: Any) -> None:
    with TestClient(open_app, client=("10.1.2.3", 5000)) as remote:
        response = remote.get("/api/v1/queues")
        assert response.status_code == 401
        assert "loopback" in response.json()["detail"]
        assert remote.post("/api/v1/tasks", json={"queue": "q", "kind": "k"}).status_code == 401
    for host in ("127.0.0.1", "::1", "testclient"):
        with TestClient(open_app, client=(host, 5000)) as local:
            assert local.post("/api/v1/queues/q/pause").status_code == 200  # loopback is admin


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://evil.example", False),
        ("http://127.0.0.1.evil.example:8000", False),
        ("null", False),  # a sandboxed or file: page
        ("http://[::1", False),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
    ],
)
def test_without_tokens_a_page_not_from_loopback_is_refused(open_app: Any, origin: str, allowed: bool) -> None:
    """A page the operator opens must not drive a token-less server through the browser (CSRF, DNS rebinding)."""
    with TestClient(open_app) as local:
        for response in (
            local.post("/api/v1/tasks", content=b'{"queue": "q", "kind": "k"}', headers={"origin": origin}),
            local.post("/api/v1/queues/q/pause", headers={"origin": origin}),
            local.get("/api/v1/tasks", headers={"origin": origin}),
        ):
            if allowed:
                assert response.status_code in (200, 201), response.text
            else:
                assert response.status_code == 403, response.text
                assert "loopback" in response.json()["detail"]
        if not allowed:
            assert local.get("/api/v1/tasks").json()["items"] == []


def test_with_tokens_any_origin_with_a_token_is_served(sqlite_url: str) -> None:
    """A browser cannot attach a bearer token across origins without CORS, which the server does not grant."""
    with TestClient(create_app(sqlite_url, tokens=TOKENS)) as client:
        response = client.get("/api/v1/queues", headers={"origin": "https://ops.example", **bearer(READ)})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


def test_with_tokens_a_remote_client_with_a_token_is_served(sqlite_url: str) -> None:
    app = create_app(sqlite_url, tokens=TOKENS)
    with TestClient(app, client=("10.1.2.3", 5000)) as remote:
        assert remote.get("/api/v1/queues").status_code == 401
        assert remote.get("/api/v1/queues", headers=bearer(READ)).status_code == 200


def test_serve_on_a_public_address_without_a_token_refuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TASKSTORE_API_TOKENS", raising=False)

    def never(*args: Any, **kwargs: Any) -> None:  # were the refusal gone, no server may start on 0.0.0.0
        raise AssertionError("uvicorn.run was called")

    monkeypatch.setattr("uvicorn.run", never)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--url", "memory://", "--host", "0.0.0.0", "--port", "1"])
    assert exited.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0" in err
    assert "--token" in err


@pytest.mark.slow
def test_serve_on_a_public_address_without_a_token_exits_non_zero_as_a_process() -> None:
    env = {"PATH": "/usr/bin:/bin", "TASKSTORE_API_TOKENS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "taskstore", "serve", "--url", "memory://", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "refusing to serve on 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr


def test_tokens_never_appear_in_logs_or_responses(secured: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = secured.client
    secrets = [t.partition(":")[2] for t in TOKENS]
    wrong = "wrong-secret-that-is-long"
    bodies: list[str] = []
    for headers in (bearer(ADMIN), bearer(WORKER), bearer(READ), {"Authorization": f"Bearer {wrong}"}):
        for endpoint in plain(ENDPOINTS):
            bodies.append(_call(client, endpoint, headers).text)
        bodies.append(client.post("/api/v1/tasks", content=b"{", headers=headers).text)
    text = "\n".join(bodies) + caplog.text + repr(secured.client.app.state.taskstore.auth.tokens)  # type: ignore[attr-defined]
    for secret in [*secrets, wrong]:
        assert secret not in text


@pytest.mark.parametrize(
    "value", ["short", "admin:short", "admin:has space in it", " padded-secret", "worker:tab\there-secret"]
)
def test_a_bad_token_is_a_config_error(value: str) -> None:
    with pytest.raises(errors.ConfigError):
        Token.parse(value)
    with pytest.raises(errors.ConfigError):
        create_app("memory://", tokens=[value])


def test_token_parsing() -> None:
    assert Token.parse("read:abcdefgh") == Token(Role.READ, "abcdefgh")
    assert Token.parse("abcdefgh") == Token(Role.ADMIN, "abcdefgh")
    assert Token.parse("other:abcdefgh") == Token(Role.ADMIN, "other:abcdefgh")  # not a role: all of it is secret
    assert "abcdefgh" not in repr(Token.parse("abcdefgh"))
    with pytest.raises(errors.ConfigError, match="twice"):
        parse_tokens(["read:abcdefgh", "admin:abcdefgh"])


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSTORE_API_TOKENS", " read:abcdefgh , worker:ijklmnop,")
    assert [t.role for t in tokens_from_env()] == [Role.READ, Role.WORKER]
    monkeypatch.setenv("TASKSTORE_API_TOKENS", "read:short")
    with pytest.raises(errors.ConfigError):
        tokens_from_env()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_a_real_server_never_logs_its_tokens(tmp_path: Path) -> None:
    """``taskstore serve`` under uvicorn at debug level: requests with good and bad tokens; nothing shows one."""
    secret, wrong = "real-server-secret-1", "wrong-guess-secret-2"
    port = _free_port()
    env = {**os.environ, "TASKSTORE_API_TOKENS": f"worker:{secret}"}
    command = [sys.executable, "-m", "taskstore", "serve", "--url", f"sqlite:///{tmp_path / 's.db'}"]
    command += ["--port", str(port), "--log-level", "debug"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    statuses: list[int] = []
    bodies: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5):
                    break
            except OSError:
                time.sleep(0.1)
        for token in (secret, wrong, secret):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/tasks",
                data=json.dumps({"queue": "q", "kind": "k", "args": "x"}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    statuses.append(response.status)
                    bodies.append(response.read().decode())
            except urllib.error.HTTPError as refused:
                statuses.append(refused.code)
                bodies.append(refused.read().decode())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert statuses == [201, 401, 201]
    text = output.decode(errors="replace") + "\n".join(bodies)
    assert "POST /api/v1/tasks" in text  # the access log ran, at debug level
    assert secret not in text
    assert wrong not in text
