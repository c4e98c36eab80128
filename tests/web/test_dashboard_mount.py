"""The dashboard mounted under a prefix (inside another Starlette/FastAPI app): every link, form, script and
redirect stays under the prefix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from taskstore.web import create_app

LINK = re.compile(r'(?:href|action|src|sse-connect|hx-get)="([^"]*)"')


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    parent = Starlette(routes=[Mount("/ops", app=create_app(f"sqlite:///{tmp_path / 'store.db'}", tokens=[]))])
    with TestClient(parent, base_url="http://127.0.0.1") as c:
        yield c


def _dead_task(client: TestClient) -> str:
    task = client.post("/ops/api/v1/tasks", json={"queue": "mail", "kind": "send", "max_attempts": 1}).json()
    claimed = client.post("/ops/api/v1/claims", json={"worker_id": "w", "queues": ["mail"]}).json()["tasks"][0]
    failure = {"type": "Boom", "message": "x", "retryable": False}
    lease = {"worker_id": "w", "token": claimed["token"]}
    assert client.post(f"/ops/api/v1/tasks/{task['id']}/fail", json={**lease, "failure": failure}).status_code == 200
    return str(task["id"])


def test_every_link_of_every_page_stays_under_the_prefix(client: TestClient) -> None:
    task_id = _dead_task(client)
    for path in ("/", "/queues/mail", f"/tasks/{task_id}", "/dead", "/workers", "/recurring"):
        page = client.get(f"/ops{path}")
        assert page.status_code == 200, path
        links = LINK.findall(page.text)
        assert links, path
        for link in links:
            assert link.startswith(("/ops/", "?", "#")), (path, link)
        assert 'data-root="/ops"' in page.text
    assert client.get("/ops/static/dashboard.css").status_code == 200


def test_actions_and_the_search_redirect_under_the_prefix(client: TestClient) -> None:
    task_id = _dead_task(client)
    client.get("/ops/")  # sets the CSRF cookie
    csrf = client.cookies.get("taskstore_csrf")
    retried = client.post(f"/ops/tasks/{task_id}/retry", data={"csrf": csrf}, follow_redirects=False)
    assert retried.status_code == 303
    assert retried.headers["location"] == f"/ops/tasks/{task_id}"
    found = client.get("/ops/search", params={"id": task_id}, follow_redirects=False)
    assert found.headers["location"] == f"/ops/tasks/{task_id}"


def test_the_login_redirects_under_the_prefix(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'store.db'}", tokens=["admin:admin-secret-1"])
    parent = Starlette(routes=[Mount("/ops", app=app)])
    with TestClient(parent, base_url="http://127.0.0.1") as c:
        gone = c.get("/ops/dead", follow_redirects=False)
        assert gone.status_code == 303
        assert gone.headers["location"] == "/ops/login?next=/ops/dead"
        form = c.get("/ops/login?next=/ops/dead")
        assert 'action="/ops/login"' in form.text
        csrf = c.cookies.get("taskstore_csrf")
        done = c.post(
            "/ops/login", data={"csrf": csrf, "token": "admin-secret-1", "next": "/ops/dead"}, follow_redirects=False
        )
        assert done.headers["location"] == "/ops/dead"
        assert c.get("/ops/dead").status_code == 200
