"""``POST /api/v1/tasks`` takes the trace context of a client in any language from its ``traceparent`` header."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from taskstore import _otel
from taskstore.web import create_app

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def client() -> Iterator[TestClient]:
    _otel.reload()
    with TestClient(create_app("memory://", tokens=[])) as the_client:
        yield the_client
    _otel.reload()


def test_one_task_carries_the_headers_trace_context(client: TestClient) -> None:
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=value"}
    response = client.post("/api/v1/tasks", json={"queue": "q", "kind": "k", "context": {"a": 1}}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["context"] == {"traceparent": TRACEPARENT, "tracestate": "vendor=value", "a": 1}


def test_a_batch_carries_it_too_and_no_header_adds_nothing(client: TestClient) -> None:
    body = {"tasks": [{"queue": "q", "kind": "k"}, {"queue": "q", "kind": "k", "context": {"traceparent": "own"}}]}
    response = client.post("/api/v1/tasks", json=body, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 201, response.text
    assert [t["context"] for t in response.json()["tasks"]] == [{"traceparent": TRACEPARENT}, {"traceparent": "own"}]
    plain = client.post("/api/v1/tasks", json={"queue": "q", "kind": "k"})
    assert plain.json()["context"] is None
    invalid = client.post("/api/v1/tasks", json={"queue": "q", "kind": "k"}, headers={"traceparent": "garbage"})
    assert invalid.status_code == 201
    assert invalid.json()["context"] is None
