"""Every endpoint of ``api.ENDPOINTS`` against SPEC §10, on memory, SQLite and PostgreSQL (the ``api`` fixture)."""

from __future__ import annotations

import threading
import time
from typing import Any

from taskstore.model import NewTask, RecurringTask, WorkerHeartbeat
from taskstore.web import api as api_module

from .conftest import Api, plain

V1 = "/api/v1"


def lease(task: dict[str, Any], worker: str = "w1", **extra: Any) -> dict[str, Any]:
    return {"worker_id": worker, "token": task["token"], **extra}


def test_every_endpoint_is_tested_here() -> None:
    """A new endpoint in the table must get a behaviour test: this list is checked against it."""
    tested = {
        "create_tasks", "list_tasks", "get_task", "why_task", "cancel_task", "retry_task", "claim", "report",
        "done", "fail", "unclaim", "cancelled", "completions", "list_queues", "pause_queue", "resume_queue",
        "list_workers", "list_recurring", "get_status", "get_group",
    }  # fmt: skip
    assert {e.name for e in plain(api_module.ENDPOINTS)} == tested


def test_create_one_and_get_it(api: Api) -> None:
    created = api.create(args={"n": 1}, priority=5, context={"trace": "x"}, run_at="2030-01-01T00:00:00+02:00")
    assert created["state"] == "queued"
    assert created["args"] == {"n": 1}
    assert created["run_at"] == "2029-12-31T22:00:00Z"  # RFC 3339 UTC
    assert "token" not in created
    got = api.client.get(f"{V1}/tasks/{created['id']}")
    assert got.status_code == 200
    assert got.json() == created


def test_create_many_is_all_or_nothing(api: Api) -> None:
    items = [{"queue": "q", "kind": "k", "args": i} for i in range(3)]
    bad = {"tasks": [*items, {"queue": "q", "kind": "k", "max_attempts": 0}]}
    refused = api.client.post(f"{V1}/tasks", json=bad)
    assert refused.status_code == 422
    assert refused.json()["field"] == "tasks[3].max_attempts"
    assert api.client.get(f"{V1}/tasks").json()["items"] == []
    # The store's own refusal (a duplicate id inside the batch) also creates none.
    dup = {"tasks": [{"queue": "q", "kind": "k", "id": "same"}, {"queue": "q", "kind": "k", "id": "same"}]}
    assert api.client.post(f"{V1}/tasks", json=dup).status_code in (409, 422)
    assert api.client.get(f"{V1}/tasks").json()["items"] == []
    made = api.client.post(f"{V1}/tasks", json={"tasks": items})
    assert made.status_code == 201
    assert [t["args"] for t in made.json()["tasks"]] == [0, 1, 2]


def test_unique_task_returns_the_existing_one(api: Api) -> None:
    first = api.create(unique_key="only-one", args=1)
    again = api.create(unique_key="only-one", args=2)
    assert again["id"] == first["id"]
    assert again["args"] == 1
    assert len(api.client.get(f"{V1}/tasks").json()["items"]) == 1


def test_an_existing_id_is_a_conflict(api: Api) -> None:
    api.create(id="fixed")
    again = api.client.post(f"{V1}/tasks", json={"queue": "q", "kind": "k", "id": "fixed"})
    assert again.status_code == 409
    assert again.json()["type"] == "AlreadyExists"


def test_list_filters_and_pages_with_a_cursor(api: Api) -> None:
    ids = [api.create(queue="a", args=i)["id"] for i in range(5)]
    other = api.create(queue="b")
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"queue": "a", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = api.client.get(f"{V1}/tasks", params=params).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    claimed = api.claim(queues=["b"])
    assert [t["id"] for t in claimed] == [other["id"]]
    by_state = api.client.get(f"{V1}/tasks", params={"state": "claimed"}).json()["items"]
    assert [t["id"] for t in by_state] == [other["id"]]
    newest = api.client.get(f"{V1}/tasks", params={"descending": "true", "limit": 1}).json()["items"]
    assert [t["id"] for t in newest] == [other["id"]]


def test_list_filters_by_kind(api: Api) -> None:
    sends = [api.create(queue="a", kind="send")["id"], api.create(queue="b", kind="send")["id"]]
    api.create(queue="a", kind="bill")
    listed = api.client.get(f"{V1}/tasks", params={"kind": "send"}).json()["items"]
    assert [t["id"] for t in listed] == sends
    both = api.client.get(f"{V1}/tasks", params={"kind": "send", "queue": "a"}).json()["items"]
    assert [t["id"] for t in both] == sends[:1]
    assert api.client.get(f"{V1}/tasks", params={"kind": ""}).status_code == 422


def test_get_falls_back_to_the_archive(api: Api) -> None:
    task = api.create()
    (claimed,) = api.claim()
    assert api.client.post(f"{V1}/tasks/{task['id']}/done", json=lease(claimed, result=42)).status_code == 200
    store = api.store()
    assert api.run(store.archive, before=api.clock.now()) == 1
    got = api.client.get(f"{V1}/tasks/{task['id']}")
    assert got.status_code == 200
    assert got.json()["result"]["value"] == 42
    archived = api.client.get(f"{V1}/tasks", params={"archived": "true"}).json()["items"]
    assert [t["id"] for t in archived] == [task["id"]]
    assert api.client.get(f"{V1}/tasks/nope").status_code == 404


def test_claim_report_done(api: Api) -> None:
    task = api.create(args=[1, 2])
    (claimed,) = api.claim(limit=10)
    assert claimed["id"] == task["id"]
    assert claimed["state"] == "claimed"
    assert claimed["token"]
    reported = api.client.post(
        f"{V1}/tasks/{task['id']}/report", json=lease(claimed, data={"progress": 0.5}, extend_by=600)
    )
    assert reported.status_code == 200, reported.text
    body = reported.json()
    assert body["claim"]["last_report"]["data"] == {"progress": 0.5}
    assert body["claim"]["times_out_at"] > claimed["claim"]["times_out_at"]
    assert body["cancel_requested"] is False
    assert "token" not in body
    done = api.client.post(f"{V1}/tasks/{task['id']}/done", json=lease(claimed, result={"ok": True}))
    assert done.status_code == 200
    assert done.json()["state"] == "done"
    assert done.json()["result"]["value"] == {"ok": True}


def test_claim_limit(api: Api) -> None:
    for i in range(5):
        api.create(args=i)
    assert len(api.claim(limit=3)) == 3
    assert len(api.claim(limit=3)) == 2
    assert api.claim(limit=3) == []


def test_a_blocking_claim_gets_a_task_created_while_it_waits(api: Api) -> None:
    got: list[Any] = []

    def waiting_claim() -> None:
        got.append(api.client.post(f"{V1}/claims", json={"worker_id": "w1", "queues": ["q"], "block_for": 30}))

    waiter = threading.Thread(target=waiting_claim)
    waiter.start()
    time.sleep(0.3)  # ordering only (the claim is then most likely waiting); nothing asserts on time
    task = api.create()
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert got[0].status_code == 200
    assert [t["id"] for t in got[0].json()["tasks"]] == [task["id"]]


def test_cancel_a_running_task_is_seen_in_report_then_cancelled(api: Api) -> None:
    task = api.create()
    (claimed,) = api.claim()
    cancel = api.client.post(f"{V1}/tasks/{task['id']}/cancel")
    assert cancel.status_code == 200
    assert cancel.json()["cancel_requested"] is True
    report = api.client.post(f"{V1}/tasks/{task['id']}/report", json=lease(claimed))
    assert report.json()["cancel_requested"] is True
    ended = api.client.post(f"{V1}/tasks/{task['id']}/cancelled", json=lease(claimed))
    assert ended.status_code == 200
    assert ended.json()["state"] == "cancelled"
    again = api.client.post(f"{V1}/tasks/{task['id']}/retry")
    assert again.status_code == 200
    assert again.json()["state"] == "queued"


def test_cancel_a_queued_task(api: Api) -> None:
    task = api.create()
    assert api.client.post(f"{V1}/tasks/{task['id']}/cancel").json()["state"] == "cancelled"
    assert api.claim() == []
    assert api.client.post(f"{V1}/tasks/nope/cancel").status_code == 404


def test_fail_retries_then_dies_and_retry_revives(api: Api) -> None:
    task = api.create(max_attempts=2)
    failure = {"type": "Boom", "message": "it broke", "data": {"code": 7}}
    (claimed,) = api.claim()
    first = api.client.post(f"{V1}/tasks/{task['id']}/fail", json=lease(claimed, failure=failure, retry_in=0))
    assert first.status_code == 200
    assert first.json()["state"] == "failed"
    (claimed,) = api.claim()
    second = api.client.post(f"{V1}/tasks/{task['id']}/fail", json=lease(claimed, failure=failure))
    body = second.json()
    assert body["state"] == "dead"
    assert body["result"]["failure"]["type"] == "Boom"
    assert [f["failure"]["message"] for f in body["failures"]] == ["it broke", "it broke"]
    revived = api.client.post(f"{V1}/tasks/{task['id']}/retry")
    assert revived.json()["state"] == "queued"
    assert api.client.post(f"{V1}/tasks/{task['id']}/retry").json()["state"] == "queued"  # idempotent


def test_a_failure_not_retryable_is_dead_at_once(api: Api) -> None:
    task = api.create()
    (claimed,) = api.claim()
    failure = {"type": "Fatal", "retryable": False}
    assert (
        api.client.post(f"{V1}/tasks/{task['id']}/fail", json=lease(claimed, failure=failure)).json()["state"] == "dead"
    )


def test_unclaim_gives_it_back_without_spending_an_attempt(api: Api) -> None:
    task = api.create()
    (claimed,) = api.claim()
    back = api.client.post(f"{V1}/tasks/{task['id']}/unclaim", json=lease(claimed))
    assert back.status_code == 200
    assert back.json()["state"] == "queued"
    (again,) = api.claim(worker="w2")
    assert again["id"] == task["id"]
    assert again["token"] != claimed["token"]


def test_completions_mixed_outcomes(api: Api) -> None:
    ok, retried, dead, stale = (api.create(args=i, max_attempts=1 if i == 2 else 5) for i in range(4))
    claimed = {t["id"]: t for t in api.claim(limit=10)}
    assert len(claimed) == 4
    items = [
        {"id": ok["id"], "token": claimed[ok["id"]]["token"], "result": "fine"},
        {"id": retried["id"], "token": claimed[retried["id"]]["token"], "failure": {"type": "E"}, "retry_in": 5},
        {"id": dead["id"], "token": claimed[dead["id"]]["token"], "failure": {"type": "E"}},
        {"id": stale["id"], "token": "not-the-token"},
        {"id": "missing", "token": "whatever", "failure": {"type": "E"}},
    ]
    response = api.client.post(f"{V1}/completions", json={"worker_id": "w1", "tasks": items})
    assert response.status_code == 200, response.text
    outcomes = response.json()["outcomes"]
    assert [o["id"] for o in outcomes] == [i["id"] for i in items]
    assert [(o["ok"], o["state"]) for o in outcomes[:3]] == [(True, "done"), (True, "failed"), (True, "dead")]
    assert outcomes[3]["ok"] is False
    assert outcomes[3]["error"]["type"] == "NotOwned"
    assert outcomes[3]["error"]["status"] == 409
    assert outcomes[4]["error"]["type"] == "NotFound"
    assert api.client.get(f"{V1}/tasks/{stale['id']}").json()["state"] == "claimed"
    assert api.client.get(f"{V1}/tasks/{ok['id']}").json()["result"]["value"] == "fine"
    twice = {"worker_id": "w1", "tasks": [items[0], items[0]]}
    assert api.client.post(f"{V1}/completions", json=twice).json()["field"] == "tasks"


def test_fencing_a_stale_token_then_a_reaped_lease(api: Api) -> None:
    task = api.create(processing_timeout=30)
    (claimed,) = api.claim()
    before = api.client.get(f"{V1}/tasks/{task['id']}").json()
    for path, extra in [("done", {}), ("report", {}), ("fail", {"failure": {"type": "E"}}), ("unclaim", {})]:
        wrong = api.client.post(f"{V1}/tasks/{task['id']}/{path}", json={**lease(claimed), "token": "x" * 32, **extra})
        assert wrong.status_code == 409, (path, wrong.text)
        assert wrong.json()["type"] == "NotOwned"
        other = api.client.post(f"{V1}/tasks/{task['id']}/{path}", json={**lease(claimed, worker="w2"), **extra})
        assert other.status_code == 409
        assert other.json()["type"] == "NotOwned"
    assert api.client.get(f"{V1}/tasks/{task['id']}").json() == before
    api.clock.advance(31)
    assert api.run(api.store().reap) == 1
    reaped = api.client.get(f"{V1}/tasks/{task['id']}").json()
    assert reaped["state"] == "failed"
    late = api.client.post(f"{V1}/tasks/{task['id']}/done", json=lease(claimed, result="late"))
    assert late.status_code == 409
    assert late.json()["type"] == "NotClaimed"
    assert api.client.get(f"{V1}/tasks/{task['id']}").json() == reaped


def test_queues_pause_and_resume(api: Api) -> None:
    task = api.create(queue="slow")
    paused = api.client.post(f"{V1}/queues/slow/pause")
    assert paused.status_code == 200
    assert paused.json()["paused"] is True
    assert paused.json()["counts"]["queued"] == 1
    assert api.claim(queues=["slow"]) == []
    why = api.client.get(f"{V1}/tasks/{task['id']}/why").json()
    assert why["id"] == task["id"]
    assert any("paus" in reason for reason in why["reasons"]), why
    queues = api.client.get(f"{V1}/queues").json()["queues"]
    assert [(q["name"], q["paused"]) for q in queues] == [("slow", True)]
    resumed = api.client.post(f"{V1}/queues/slow/resume")
    assert resumed.json()["paused"] is False
    after = api.client.get(f"{V1}/tasks/{task['id']}/why").json()["reasons"]
    assert not any("paus" in reason for reason in after), after
    assert [t["id"] for t in api.claim(queues=["slow"])] == [task["id"]]
    # A queue with no tasks yet can be paused ahead of time.
    empty = api.client.post(f"{V1}/queues/later/pause").json()
    assert empty["name"] == "later"
    assert empty["paused"] is True


def test_workers_recurring_statuses_groups(api: Api) -> None:
    store = api.store()
    api.run(store.set_worker_heartbeat, WorkerHeartbeat("w9", queues=("q",), inflight=2, host="h", pid=7))
    workers = api.client.get(f"{V1}/workers").json()["workers"]
    assert [(w["worker_id"], w["queues"], w["inflight"]) for w in workers] == [("w9", ["q"], 2)]

    api.run(store.add_recurring, RecurringTask("nightly", "@every 30s", NewTask("q", "tick", {"a": 1})))
    (recurring,) = api.client.get(f"{V1}/recurring").json()["recurring"]
    assert (recurring["id"], recurring["kind"], recurring["args"]) == ("nightly", "tick", {"a": 1})
    assert recurring["next_at"] is not None

    api.run(store.set_status, "remote-1", "succeeded", payload={"v": 1}, meta={"m": 2})
    status = api.client.get(f"{V1}/statuses/remote-1").json()
    assert (status["state"], status["payload"], status["meta"]) == ("succeeded", {"v": 1}, {"m": 2})
    task = api.create()
    assert api.client.get(f"{V1}/statuses/{task['id']}").json()["state"] == "queued"
    assert api.client.get(f"{V1}/statuses/nope").status_code == 404

    api.run(store.create_group, "g1", [NewTask("q", "k", 1), NewTask("q", "k", 2)])
    group = api.client.get(f"{V1}/groups/g1").json()
    assert (group["id"], group["expected"], group["completed"], group["is_complete"]) == ("g1", 2, 0, False)
    member = next(t for t in api.claim(queues=["q"], limit=10) if t.get("group_id") == "g1")
    api.client.post(f"{V1}/tasks/{member['id']}/done", json=lease(member, result="r"))
    group = api.client.get(f"{V1}/groups/g1").json()
    assert group["completed"] == 1
    assert [(s["state"], s["payload"]) for s in group["results"].values()] == [("succeeded", "r")]
    assert api.client.get(f"{V1}/groups/nope").status_code == 404


def test_any_offset_rfc_3339_allows_is_stored_as_the_same_instant(api: Api) -> None:
    """+23:59 is valid RFC 3339 and Python, but past PostgreSQL's ±15:59: it was a 503 there."""
    created = api.create(run_at="2030-01-02T00:00:00+23:59", expires_at="2100-01-01T00:00:00-23:59")
    assert created["run_at"] == "2030-01-01T00:01:00Z"
    assert created["expires_at"] == "2100-01-01T23:59:00Z"
