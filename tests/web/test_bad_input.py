"""Bad input over HTTP: always a 4xx problem document naming the field where there is one; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskstore.web import create_app

from .conftest import Api

V1 = "/api/v1"


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The problem document of a refusal, checked for shape: status, media type, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text
    doc: dict[str, Any] = response.json()
    assert doc["status"] == status
    assert all(doc[key] for key in ("title", "type", "detail"))
    if field is not None:
        assert doc.get("field") == field, doc
    return doc


def post(api: Api, path: str, body: bytes, **headers: str) -> Any:
    return api.client.post(V1 + path, content=body, headers={"content-type": "application/json", **headers})


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", None),  # malformed
        (b"", None),  # empty
        (b"queue=q&kind=k", None),  # a form, not JSON
        (b"[1, 2]", None),  # JSON, not an object
        (b"\xff\xfe\x00{", None),  # not UTF-8
        (b'{"queue": "q", "kind": "k", "args": "\xff"}', None),  # invalid UTF-8 inside a string
        (b'{"queue": 1, "kind": "k"}', "queue"),  # wrong type
        (b'{"queue": "Bad Queue", "kind": "k"}', "queue"),
        (b'{"queue": "q", "kind": "k", "priority": "high"}', "priority"),
        (b'{"queue": "q", "kind": "k", "priority": 1e40}', "priority"),
        (b'{"queue": "q", "kind": "k", "priority": 2147483648}', "priority"),
        (b'{"queue": "q", "kind": "k", "max_attempts": 0}', "max_attempts"),
        (b'{"queue": "q", "kind": "k", "qeueu": "typo"}', "qeueu"),  # unknown field, named
        (b'{"kind": "k"}', "queue"),  # missing
        (b'{"queue": "q", "kind": "k", "run_at": "2030-01-01T00:00:00"}', "run_at"),  # naive
        (b'{"queue": "q", "kind": "k", "expires_at": "yesterday"}', "expires_at"),
        (b'{"queue": "q", "kind": "k", "run_at": "9999-12-31T23:59:59+00:00"}', None),  # past the store's range
        (b'{"queue": "q", "kind": "k", "expires_at": "0001-01-01T00:06:00+03:00"}', None),  # no UTC form: was a 500
        (b'{"queue": "q", "kind": "k", "run_at": "9999-12-31T23:59:00-01:00"}', None),
        (b'{"queue": "q", "kind": "k\\u0000"}', "kind"),
        (b'{"queue": "q", "kind": "k", "unique_key": "\\u0000"}', "unique_key"),
        (b'{"queue": "q", "kind": "k", "priority": NaN}', None),
        (b'{"queue": "q", "kind": "k", "processing_timeout": Infinity}', None),
        (
            b'{"queue": "q", "kind": "k", "retry": {"policy": "polynomial", "lost_lease_delay": -1}}',
            "retry.lost_lease_delay",
        ),
        (b'{"queue": "q", "kind": "k", "args": {"x": 1e999}}', "args"),  # overflows to infinity
        (b'{"queue": "q", "kind": "k", "args": -Infinity}', None),
        (b'{"queue": "q", "kind": "k", "id": "' + b"a" * 256 + b'"}', "id"),  # too long
        (b'{"queue": "q", "kind": "k", "id": ""}', "id"),
        (b'{"queue": "q", "kind": "k", "id": "a\\u0000b"}', "id"),  # control characters
        (b'{"queue": "q", "kind": "k", "id": "a\\nb"}', "id"),
        (b'{"queue": "q", "kind": "k", "id": "../../etc/passwd"}', "id"),  # no path could address it
        (b'{"queue": "q", "kind": "k", "args": "\\ud800"}', None),  # a lone surrogate
        (b'{"queue": "q", "kind": "k", "args": ' + DEEP + b"}", None),  # nested past any parser's depth
        (b'{"queue": "q", "kind": "k", "args": ' + DEEP_OBJECT + b"}", None),
        (DEEP, None),
        (b'{"tasks": []}', "tasks"),
        (b'{"tasks": [{"queue": "q", "kind": "k"}, {"queue": "q"}]}', "tasks[1].kind"),
        (b'{"tasks": {"queue": "q"}}', "tasks"),
        (b'{"tasks": [], "queue": "q"}', None),
    ],
)
def test_create_refuses_bad_bodies(sqlite_api: Api, body: bytes, field: str | None) -> None:
    problem(post(sqlite_api, "/tasks", body), 422, field)
    assert sqlite_api.client.get(f"{V1}/tasks").json()["items"] == []


def test_a_retry_policy_may_carry_a_lost_lease_delay(sqlite_api: Api) -> None:
    body = b'{"queue": "q", "kind": "k", "retry": {"policy": "exponential", "base": 4, "lost_lease_delay": 1.5}}'
    created = post(sqlite_api, "/tasks", body)
    assert created.status_code == 201
    assert created.json()["retry"]["lost_lease_delay"] == 1.5


def test_a_duplicate_key_takes_the_last_value(sqlite_api: Api) -> None:
    """What JSON parsers commonly do (RFC 8259 leaves it open): pinned here so a change is seen."""
    created = post(sqlite_api, "/tasks", b'{"queue": "q", "kind": "a", "kind": "b"}')
    assert created.status_code == 201
    assert created.json()["kind"] == "b"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/claims", b'{"worker_id": "w", "limit": 0}', "limit"),
        ("/claims", b'{"worker_id": "w", "limit": 1001}', "limit"),
        ("/claims", b'{"worker_id": "w", "block_for": -1}', "block_for"),
        ("/claims", b'{"worker_id": "w", "block_for": 61}', "block_for"),
        ("/claims", b'{"worker_id": "w", "queues": "q"}', "queues"),
        ("/claims", b'{"worker_id": "w", "queues": ["Q Q"]}', "queues[0]"),
        ("/claims", b'{"worker_id": "", "queues": ["q"]}', "worker_id"),
        ("/claims", b'{"queues": ["q"]}', "worker_id"),
        ("/tasks/x/done", b'{"worker_id": "w"}', "token"),
        ("/tasks/x/done", b'{"worker_id": "w", "token": "t", "result": ' + DEEP + b"}", None),
        ("/tasks/x/report", b'{"worker_id": "w", "token": "t", "extend_by": 0}', "extend_by"),
        ("/tasks/x/report", b'{"worker_id": "w", "token": "t", "extend_by": "1h"}', "extend_by"),
        ("/tasks/x/fail", b'{"worker_id": "w", "token": "t"}', "failure"),
        ("/tasks/x/fail", b'{"worker_id": "w", "token": "t", "failure": {"message": "m"}}', "failure.type"),
        ("/tasks/x/fail", b'{"worker_id": "w", "token": "t", "failure": {"type": "E", "nope": 1}}', "failure.nope"),
        ("/tasks/x/fail", b'{"worker_id": "w", "token": "t", "failure": {"type": "E"}, "retry_in": -1}', "retry_in"),
        ("/tasks/x/unclaim", b'{"worker_id": "w", "token": "t", "extra": 1}', "extra"),
        ("/completions", b'{"worker_id": "w", "tasks": []}', "tasks"),
        # NUL once reached PostgreSQL in a batch write and came back a 503.
        ("/completions", b'{"worker_id": "w\\u0000", "tasks": [{"id": "x", "token": "t"}]}', "worker_id"),
        ("/completions", b'{"worker_id": "w", "tasks": [{"id": "x", "token": "t\\u0000"}]}', "tasks[0].token"),
        ("/tasks/x/done", b'{"worker_id": "w\\u0000", "token": "t"}', "worker_id"),
        ("/completions", b'{"worker_id": "w", "tasks": [{"id": "x"}]}', "tasks[0].token"),
        ("/tasks/x/cancel", b"", None),  # an id that does not exist: 404, below
    ],
)
def test_worker_endpoints_refuse_bad_bodies(sqlite_api: Api, path: str, body: bytes, field: str | None) -> None:
    response = post(sqlite_api, path, body)
    if path.endswith("/cancel"):
        problem(response, 404)
        return
    problem(response, 422, field)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/tasks/" + "a" * 256, 422),  # too long
        ("GET", "/tasks/%00", 422),  # NUL
        ("GET", "/tasks/a%01b", 404),  # a control character: a well-formed id no task has
        ("GET", "/tasks/..%2F..%2Fetc%2Fpasswd", 404),  # decoded to a path no route has
        ("GET", "/tasks/%2e%2e", 404),
        ("GET", "/tasks/%ff%fe", 404),  # not UTF-8 once decoded
        ("POST", "/tasks/" + "a" * 300 + "/cancel", 422),
        ("POST", "/queues/Not%20A%20Queue/pause", 422),
        ("POST", "/queues/" + "q" * 65 + "/pause", 422),
        ("GET", "/statuses/%00", 422),
        ("GET", "/groups/" + "g" * 256, 422),
        ("GET", "/tasks?limit=0", 422),
        ("GET", "/tasks?limit=ten", 422),
        ("GET", "/tasks?limit=99999999999999999999999999", 422),
        ("GET", "/tasks?state=sleeping", 422),
        ("GET", "/tasks?queue=", 422),
        ("GET", "/tasks?cursor=not-a-cursor", 422),
        ("GET", "/tasks?descending=perhaps", 422),
        ("GET", "/tasks?limit=1&limit=2", 422),
        ("GET", "/tasks?unknown=1", 422),
        ("DELETE", "/tasks", 405),
        ("PUT", "/tasks/x", 405),
        ("GET", "/claims", 405),
        ("POST", "/queues", 405),
        ("GET", "/nothing/here", 404),
        ("GET", "/tasks/x/nothing", 404),
    ],
)
def test_bad_paths_queries_and_methods(sqlite_api: Api, method: str, path: str, status: int) -> None:
    doc = problem(sqlite_api.client.request(method, V1 + path), status)
    if "?" in path and status == 422 and "cursor" not in path:
        assert doc["field"] in path


def test_a_wrong_method_says_which_are_allowed(sqlite_api: Api) -> None:
    response = sqlite_api.client.delete(f"{V1}/tasks")
    problem(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}


def test_outside_the_api(sqlite_api: Api) -> None:
    problem(sqlite_api.client.get("/nowhere"), 404)
    problem(sqlite_api.client.post("/api/openapi.json"), 405)


@pytest.fixture
def small(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_url, max_body=4096), raise_server_exceptions=False) as client:
        yield client


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 1000
        sent += 1000


@pytest.mark.parametrize("path", ["/tasks", "/claims", "/tasks/x/done", "/completions"])
def test_a_body_over_the_cap_is_413(small: TestClient, path: str) -> None:
    big = b'{"queue": "q", "kind": "k", "args": "' + b"x" * 5000 + b'"}'
    doc = problem(small.post(V1 + path, content=big), 413)
    assert doc["type"] == "PayloadTooLarge"
    # Streamed without a Content-Length: counted as it arrives.
    streamed = small.post(V1 + path, content=_chunks(100_000))
    assert "content-length" not in streamed.request.headers
    problem(streamed, 413)
    # A Content-Length that lies low does not get more in either.
    lying = small.post(V1 + path, content=big, headers={"content-length": "10"})
    assert lying.status_code in (413, 422), lying.text
    assert small.get(f"{V1}/tasks").json()["items"] == []


def test_a_body_at_the_cap_is_read(small: TestClient) -> None:
    body = b'{"queue": "q", "kind": "k", "args": "' + b"x" * 4000 + b'"}'
    body += b" " * (4096 - len(body))
    assert small.post(f"{V1}/tasks", content=body).status_code == 201


def test_a_store_that_cannot_be_reached_is_503_with_retry_after() -> None:
    # Nothing listens on port 1; the short connect_timeout only bounds how long the test waits to be refused.
    app = create_app("postgresql://postgres@127.0.0.1:1/nowhere", store_options={"connect_timeout": 0.5})
    with TestClient(app, raise_server_exceptions=False) as client:
        for response in (client.get(f"{V1}/queues"), client.post(f"{V1}/tasks", json={"queue": "q", "kind": "k"})):
            doc = problem(response, 503)
            assert doc["type"] == "BackendUnavailable"
            assert int(response.headers["retry-after"]) >= 1


def test_a_store_whose_pool_stopped_is_503(postgres_db: str) -> None:
    from ..postgres_server import new_schema, with_schema

    app = create_app(with_schema(postgres_db, new_schema()))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post(f"{V1}/tasks", json={"queue": "q", "kind": "k"}).status_code == 201
        store = client.portal.call(app.state.taskstore.store)  # type: ignore[union-attr]
        client.portal.call(store._driver._pool.close)  # type: ignore[union-attr]
        for response in (client.get(f"{V1}/tasks"), client.post(f"{V1}/claims", json={"worker_id": "w"})):
            problem(response, 503)
            assert response.headers["retry-after"] == "1"
