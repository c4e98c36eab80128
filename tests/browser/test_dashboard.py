"""The dashboard in a real browser: numbers, buttons, live updates, escaping, and no console errors."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from .conftest import Server, api, login

pytestmark = pytest.mark.slow


def _queue() -> str:
    return f"q{uuid.uuid4().hex[:10]}"


def _dead_task(server: Server, queue: str, message: str = "boom 1", kind: str = "send") -> dict[str, Any]:
    task = api(server, "POST", "/tasks", {"queue": queue, "kind": kind, "args": {"n": 1}, "max_attempts": 1})
    # The queue holds no other ready task when this is called: the claim takes this one.
    claimed = api(server, "POST", "/claims", {"worker_id": "w-test", "queues": [queue], "limit": 1})["tasks"][0]
    assert claimed["id"] == task["id"]
    failure = {"type": "SMTPError", "message": message, "retryable": False, "traceback": "Traceback: SMTPError"}
    api(
        server,
        "POST",
        f"/tasks/{claimed['id']}/fail",
        {"worker_id": "w-test", "token": claimed["token"], "failure": failure},
    )
    assert api(server, "GET", f"/tasks/{task['id']}")["state"] == "dead"
    return task


def test_overview_numbers_match_the_store(page: Any, server: Server) -> None:
    queue = _queue()
    _dead_task(server, queue)
    api(server, "POST", "/tasks", {"tasks": [{"queue": queue, "kind": "k"} for _ in range(7)]})
    page.goto(f"{server.base}/")
    counts = next(q for q in api(server, "GET", "/queues")["queues"] if q["name"] == queue)["counts"]
    row = page.locator(f"tr[data-queue='{queue}']")
    for state, n in counts.items():
        assert row.locator(f"td[data-state='{state}']").inner_text() == str(n)
    assert counts["queued"] == 7
    assert counts["dead"] == 1
    assert page.problems == []


def test_retry_a_dead_task_by_clicking_retry(page: Any, server: Server) -> None:
    task = _dead_task(server, _queue())
    page.goto(f"{server.base}/tasks/{task['id']}")
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(re.compile(r".*/tasks/.*"))
    assert api(server, "GET", f"/tasks/{task['id']}")["state"] == "queued"
    assert "queued" in page.locator("h1").inner_text()
    assert page.problems == []


def test_cancel_a_queued_task(page: Any, server: Server) -> None:
    task = api(server, "POST", "/tasks", {"queue": _queue(), "kind": "k"})
    page.goto(f"{server.base}/tasks/{task['id']}")
    page.get_by_role("button", name="Cancel").click()  # confirms (the dialog is accepted)
    page.wait_for_load_state()
    assert api(server, "GET", f"/tasks/{task['id']}")["state"] == "cancelled"
    assert page.problems == []


def test_pause_and_resume_a_queue_with_the_buttons(page: Any, server: Server) -> None:
    queue = _queue()
    api(server, "POST", "/tasks", {"queue": queue, "kind": "k"})
    page.goto(f"{server.base}/queues/{queue}")
    page.get_by_role("button", name="Pause").click()
    page.get_by_role("button", name="Resume").wait_for()
    assert next(q for q in api(server, "GET", "/queues")["queues"] if q["name"] == queue)["paused"] is True
    assert api(server, "POST", "/claims", {"worker_id": "w", "queues": [queue]})["tasks"] == []
    page.get_by_role("button", name="Resume").click()
    page.get_by_role("button", name="Pause").wait_for()
    assert next(q for q in api(server, "GET", "/queues")["queues"] if q["name"] == queue)["paused"] is False
    assert page.problems == []


def test_bulk_retry_of_a_failure_group(page: Any, server: Server) -> None:
    queue = _queue()
    marker = uuid.uuid4().hex
    # Numbers differ, the failure is the same: one group of three.
    tasks = [_dead_task(server, queue, f"mailbox {marker} full after {n} tries") for n in (3, 17, 250)]
    other = _dead_task(server, queue, f"another failure {marker}x")
    page.goto(f"{server.base}/dead")
    row = page.locator("tr", has_text=f"mailbox {marker} full")
    assert row.locator("td.num").inner_text() == "3"
    row.get_by_role("button", name="Retry").click()
    page.wait_for_url(f"{server.base}/dead")
    assert {api(server, "GET", f"/tasks/{t['id']}")["state"] for t in tasks} == {"queued"}
    assert api(server, "GET", f"/tasks/{other['id']}")["state"] == "dead"
    assert page.problems == []


def test_bulk_discard_of_a_failure_group(page: Any, server: Server) -> None:
    queue = _queue()
    marker = uuid.uuid4().hex
    tasks = [_dead_task(server, queue, f"quota {marker} exceeded by {n}") for n in (1, 42)]
    other = _dead_task(server, queue, f"something else {marker}x")
    page.goto(f"{server.base}/dead")
    row = page.locator("tr", has_text=f"quota {marker} exceeded")
    assert row.locator("td.num").inner_text() == "2"
    forged = page.request.post(f"{server.base}/dead/discard", form={"group": row.get_attribute("data-group")})
    assert forged.status == 403  # no CSRF value: refused, nothing archived
    assert api(server, "GET", f"/tasks?queue={queue}&archived=true")["items"] == []
    row.get_by_role("button", name="Discard").click()  # confirms (the dialog is accepted)
    page.wait_for_url(f"{server.base}/dead")
    assert page.locator("tr", has_text=f"quota {marker} exceeded").count() == 0
    assert page.locator("tr", has_text=f"something else {marker}x").count() == 1
    archived = api(server, "GET", f"/tasks?queue={queue}&archived=true")["items"]
    assert sorted(t["id"] for t in archived) == sorted(t["id"] for t in tasks)
    live = api(server, "GET", f"/tasks?queue={queue}")["items"]
    assert [t["id"] for t in live] == [other["id"]]
    assert live[0]["state"] == "dead"
    page.goto(f"{server.base}/tasks/{tasks[0]['id']}")  # the task page still shows it, from the archive
    assert "dead" in page.locator("h1").inner_text()
    assert page.problems == []


def test_filter_a_queue_by_kind_keeps_state_and_paging(page: Any, server: Server) -> None:
    queue = _queue()
    api(server, "POST", "/tasks", {"tasks": [{"queue": queue, "kind": "send"} for _ in range(55)]})
    api(server, "POST", "/tasks", {"tasks": [{"queue": queue, "kind": "bill"} for _ in range(3)]})
    page.goto(f"{server.base}/queues/{queue}")
    page.locator("nav.tabs a", has_text="queued").click()
    page.fill("form.filter input[name=kind]", "send")
    page.locator("form.filter").get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*kind=send.*"))
    assert "state=queued" in page.url
    kinds = page.locator("table.tasks tbody td:nth-child(2)").all_inner_texts()
    assert len(kinds) == 50
    assert set(kinds) == {"send"}
    page.get_by_role("link", name="Older →").click()
    page.wait_for_url(re.compile(r".*cursor=.*"))
    assert "kind=send" in page.url
    assert "state=queued" in page.url
    assert page.locator("table.tasks tbody td:nth-child(2)").all_inner_texts() == ["send"] * 5
    page.locator("nav.tabs a", has_text="all").click()  # another state tab keeps the kind
    page.wait_for_load_state()
    assert "kind=send" in page.url
    page.get_by_role("link", name="all kinds").click()
    page.wait_for_load_state()
    assert set(page.locator("table.tasks tbody td:nth-child(2)").all_inner_texts()) == {"send", "bill"}
    assert page.problems == []


def test_an_injected_script_shows_as_text(page: Any, server: Server) -> None:
    evil = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>"
    task = api(server, "POST", "/tasks", {"queue": _queue(), "kind": evil, "args": {"html": evil}})
    page.goto(f"{server.base}/tasks/{task['id']}")
    assert evil in page.locator("pre[data-part=args]").inner_text().replace('\\"', '"') or "window.__pwned" in (
        page.locator("pre[data-part=args]").inner_text()
    )
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("script", has_text="__pwned").count() == 0
    page.goto(f"{server.base}/queues/{task['queue']}")
    assert page.evaluate("window.__pwned === undefined")


def test_no_console_errors_on_any_page(page: Any, server: Server) -> None:
    task = _dead_task(server, _queue())
    for path in ("/", f"/queues/{task['queue']}", f"/tasks/{task['id']}", "/dead", "/workers", "/recurring"):
        page.goto(f"{server.base}{path}")
        page.wait_for_load_state("networkidle")
    assert page.problems == []


def test_the_read_role_sees_no_action_buttons(browser: Any, server: Server) -> None:
    task = _dead_task(server, _queue())
    context = browser.new_context()
    try:
        pg = context.new_page()
        login(pg, server, server.reader.split(":", 1)[1])
        pg.goto(f"{server.base}/tasks/{task['id']}")
        assert pg.get_by_role("button", name="Retry").count() == 0
        pg.goto(f"{server.base}/queues/{task['queue']}")
        assert pg.get_by_role("button", name="Pause").count() == 0
        pg.goto(f"{server.base}/dead")
        assert pg.get_by_role("button", name="Retry").count() == 0
        assert pg.get_by_role("button", name="Discard").count() == 0
        csrf = json.loads(pg.locator("body").get_attribute("hx-headers") or "{}")["X-CSRF-Token"]
        refused = pg.request.post(f"{server.base}/dead/discard", form={"group": "any", "csrf": csrf})
        assert refused.status == 403  # the action itself needs the admin role, whatever the page shows
    finally:
        context.close()


def test_pages_need_a_login(browser: Any, server: Server) -> None:
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(f"{server.base}/dead")
        assert "/login" in pg.url
        pg.fill("input[name=token]", "not-a-valid-token")
        pg.click("button[type=submit]")
        assert "not valid" in pg.content()
    finally:
        context.close()


def test_a_change_made_by_another_process_appears_live(page: Any, server: Server) -> None:
    """Another process writes straight to the store; the open overview shows it without a reload."""
    import subprocess
    import sys

    from playwright.sync_api import expect

    queue = _queue()
    api(server, "POST", "/tasks", {"queue": queue, "kind": "k"})
    page.goto(f"{server.base}/")
    cell = page.locator(f"tr[data-queue='{queue}'] td[data-state='queued']")
    expect(cell).to_have_text("1")
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    script = (
        "import asyncio, sys, taskstore\n"
        "async def main():\n"
        "    async with taskstore.open(sys.argv[1]) as s:\n"
        "        await s.create_many([taskstore.NewTask(sys.argv[2], 'k') for _ in range(4)])\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script, server.url, queue], check=True, timeout=60)
    expect(cell).to_have_text("5", timeout=10_000)  # generous: the point is that it arrives, not how fast
    assert page.evaluate("window.__same_page === true")
    assert page.problems == []


def test_a_task_page_follows_its_task_live(page: Any, server: Server) -> None:
    """A worker elsewhere claims and finishes the task: the open page shows running, then succeeded."""
    from playwright.sync_api import expect

    queue = _queue()
    task = api(server, "POST", "/tasks", {"queue": queue, "kind": "k"})
    page.goto(f"{server.base}/tasks/{task['id']}")
    page.evaluate("window.__same_page = true")
    heading = page.locator("h1 .badge").first
    expect(heading).to_have_text("queued")
    claimed = api(server, "POST", "/claims", {"worker_id": "w-live", "queues": [queue]})["tasks"][0]
    expect(heading).to_have_text("claimed", timeout=10_000)
    api(server, "POST", f"/tasks/{task['id']}/done", {"worker_id": "w-live", "token": claimed["token"], "result": 7})
    expect(heading).to_have_text("done", timeout=10_000)
    assert page.evaluate("window.__same_page === true")
    assert page.problems == []
