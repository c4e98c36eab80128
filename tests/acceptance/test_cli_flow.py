"""The flow-control commands (SPEC §9), run as a user runs them: queues, why, recurring, limits, enqueue."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import taskstore
from taskstore import NewTask, RecurringTask

from .test_cli import cli, cli_json


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def refused(proc: Any, code: int, words: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


# -- queues ---------------------------------------------------------------------------------------


def test_queues_ls_pause_and_resume(url: str) -> None:
    cli("enqueue", "mail", "send", "--url", url)
    cli("enqueue", "mail", "send", "--url", url)
    cli("enqueue", "sms", "send", "--id", "s1", "--url", url)
    cli("cancel", "s1", "--url", url)

    assert cli("queues", "pause", "mail", "--url", url).stdout.startswith("paused mail")
    queues = {q["name"]: q for q in cli_json("queues", "ls", "--url", url)}
    assert set(queues) == {"mail", "sms"}
    assert queues["mail"]["paused"] is True
    assert queues["mail"]["counts"]["queued"] == 2
    assert queues["sms"]["counts"] == {"queued": 0, "claimed": 0, "failed": 0, "done": 0, "dead": 0, "cancelled": 1}
    assert queues["mail"]["oldest_ready_at"] is not None
    assert queues["mail"]["oldest_ready_age"] >= 0
    assert queues["sms"]["oldest_ready_at"] is None
    assert queues["mail"]["workers"] == 0
    table = cli("queues", "ls", "--url", url).stdout
    assert "mail" in table
    assert "paused" in table

    assert cli_json("queues", "resume", "mail", "--url", url) == {"queue": "mail", "paused": False}
    assert [q["paused"] for q in cli_json("queues", "ls", "--url", url)] == [False, False]


def test_a_paused_queue_shows_in_why(url: str) -> None:
    task = cli_json("enqueue", "mail", "send", "--url", url)
    cli("queues", "pause", "mail", "--url", url)
    reasons = cli_json("tasks", "why", task["id"], "--url", url)
    assert any("paused" in reason for reason in reasons), reasons
    lines = cli("tasks", "why", task["id"], "--url", url).stdout.strip().splitlines()
    assert len(lines) == len(reasons)


# -- why ------------------------------------------------------------------------------------------


def test_why_of_a_finished_task_says_so_one_reason_a_line(url: str) -> None:
    cli("enqueue", "mail", "send", "--id", "t1", "--url", url)
    cli("cancel", "t1", "--url", url)
    reasons = cli_json("tasks", "why", "t1", "--url", url)
    assert isinstance(reasons, list)
    assert reasons
    assert any("cancelled" in reason for reason in reasons)
    assert cli("tasks", "why", "t1", "--url", url).stdout.strip().splitlines() == reasons


def test_why_of_a_task_nothing_holds_back(url: str) -> None:
    cli("enqueue", "mail", "send", "--id", "t1", "--url", url)
    # A live worker on the queue: only its heartbeat matters to why.
    asyncio.run(_beat(url, "mail"))
    assert cli_json("tasks", "why", "t1", "--url", url) == []
    assert cli("tasks", "why", "t1", "--url", url).stdout.strip() == "nothing holds it back: a worker will claim it"


async def _beat(url: str, queue: str) -> None:
    async with taskstore.open(url) as store:
        now = store.now()
        await store.set_worker_heartbeat(
            taskstore.WorkerHeartbeat("w1", (queue,), 0, "host", 1, "1", started_at=now, timestamp=now)
        )


# -- recurring ------------------------------------------------------------------------------------


async def _add_schedules(url: str) -> None:
    async with taskstore.open(url) as store:
        await store.add_recurring(RecurringTask("nightly", "0 3 * * *", NewTask("reports", "build")))
        await store.add_recurring(RecurringTask("[/bold]tick", "@every 1h", NewTask("cron", "tick"), owner="billing"))


def test_recurring_ls_and_rm(url: str) -> None:
    asyncio.run(_add_schedules(url))
    listed = cli_json("recurring", "ls", "--url", url)
    assert [(r["id"], r["owner"], r["queue"], r["kind"]) for r in listed] == [
        ("[/bold]tick", "billing", "cron", "tick"),
        ("nightly", None, "reports", "build"),
    ]
    assert listed[1]["schedule"] == "0 3 * * *"
    assert listed[1]["next_at"] is not None
    table = cli("recurring", "ls", "--url", url).stdout
    assert "[/bold]tick" in table
    assert "billing" in table
    assert "0 3 * * *" in table

    assert cli("recurring", "rm", "nightly", "--url", url).stdout.strip() == "removed recurring schedule nightly"
    said = cli("recurring", "rm", "[/bold]tick", "--url", url).stdout
    assert "of App billing" in said
    assert "adds it back" in said
    assert cli_json("recurring", "ls", "--url", url) == []
    assert "no recurring schedules" in cli("recurring", "ls", "--url", url).stderr


# -- limits ---------------------------------------------------------------------------------------


def test_limits_set_ls_and_clear(url: str) -> None:
    assert cli_json("limits", "set", "tenant:1", "--concurrency", "2", "--url", url) == {
        "key": "tenant:1",
        "concurrency": 2,
        "rate": None,
        "per": 1.0,
    }
    said = cli("limits", "set", "api", "--rate", "10", "--per", "1m", "--url", url).stdout
    assert said.strip() == "limited api: at most 10 started per 60s"
    assert cli_json("limits", "ls", "--url", url) == [
        {"key": "api", "concurrency": None, "rate": 10, "per": 60.0},
        {"key": "tenant:1", "concurrency": 2, "rate": None, "per": 1.0},
    ]
    assert "10 per 60s" in cli("limits", "ls", "--url", url).stdout
    assert cli_json("limits", "clear", "api", "--url", url) == {"key": "api", "cleared": True}
    assert [limit["key"] for limit in cli_json("limits", "ls", "--url", url)] == ["tenant:1"]


# -- enqueue and the task JSON ---------------------------------------------------------------------


def test_enqueue_with_flow_control_options(url: str) -> None:
    task = cli_json(
        "enqueue", "mail", "send", "--unique-key", "u1", "--concurrency-key", "tenant:1", "--expires-in", "1h",
        "--url", url,
    )  # fmt: skip
    assert task["unique_key"] == "u1"
    assert task["concurrency_key"] == "tenant:1"
    assert task["expires_at"] > task["created_at"]
    shown = cli_json("tasks", "show", task["id"], "--url", url)
    assert (shown["unique_key"], shown["concurrency_key"], shown["expires_at"]) == (
        "u1",
        "tenant:1",
        task["expires_at"],
    )
    listed = cli_json("tasks", "ls", "--url", url)["items"][0]
    assert (listed["unique_key"], listed["concurrency_key"]) == ("u1", "tenant:1")
    plain = cli_json("enqueue", "mail", "send", "--url", url)
    assert (plain["unique_key"], plain["concurrency_key"], plain["expires_at"]) == (None, None, None)


def test_enqueue_of_a_held_unique_key_gives_the_holder_back(url: str) -> None:
    first = cli_json("enqueue", "mail", "send", "--unique-key", "u1", "--url", url)
    again = cli_json("enqueue", "mail", "send", "--unique-key", "u1", "--url", url)
    assert again["id"] == first["id"]
    said = cli("enqueue", "mail", "send", "--unique-key", "u1", "--url", url).stdout.strip()
    assert said == f"not enqueued: {first['id']} on mail (send) holds unique key u1"
    assert cli_json("tasks", "count", "--url", url)["queued"] == 1


# -- bad input: one line, the right exit code, no traceback, nothing created ------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["queues", "pause", "Bad Queue"], 1, "invalid queue name"),
        (["queues", "resume", ""], 1, "invalid queue name"),
        (["tasks", "why", "nope"], 1, "task 'nope' not found"),
        (["recurring", "rm", "nope"], 1, "recurring schedule 'nope' not found"),
        (["limits", "set", "k", "--concurrency", "-1"], 1, "concurrency"),
        (["limits", "set", "k", "--rate", "-5"], 1, "rate"),
        (["limits", "set", "k", "--rate", "5", "--per", "0"], 1, "per"),
        (["limits", "set", "k", "--rate", "5", "--per", "-1s"], 2, "not a duration"),
        (["limits", "set", "k", "--per", "1s"], 2, "--rate"),
        (["limits", "set", "k"], 1, "needs a concurrency or a rate"),
        (["limits", "set", "", "--concurrency", "1"], 1, "limit key"),
        (["limits", "set", "k", "--concurrency", "many"], 2, "--concurrency"),
        (["enqueue", "q", "k", "--expires-in", "soon"], 2, "not a duration"),
        (["enqueue", "q", "k", "--unique-key", ""], 1, "unique_key"),
        (["enqueue", "q", "k", "--unique-for", "1h"], 1, "need a unique_key"),
        (["enqueue", "q", "k", "--concurrency-key", "x" * 1000], 1, "concurrency_key"),
        (["enqueue", "q", "k", "--expires-in", "0"], 1, "not in the future"),
    ],
)
def test_bad_input_is_one_line(url: str, args: list[str], code: int, words: str) -> None:
    cli("enqueue", "q", "k", "--url", url)  # the store exists: what fails is the input
    refused(cli(*args, "--url", url, ok=False), code, words)
    assert cli_json("tasks", "count", "--url", url)["queued"] == 1


def test_unknown_limit_key_is_one_line(url: str) -> None:
    cli("enqueue", "q", "k", "--url", url)
    refused(cli("limits", "clear", "nope", "--url", url, ok=False), 1, "limit on key 'nope' not found")


@pytest.mark.parametrize(
    "command",
    [["queues", "ls"], ["tasks", "why", "x"], ["recurring", "ls"], ["recurring", "rm", "x"], ["limits", "ls"]],
)
def test_read_commands_create_no_store(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo.db"
    proc = cli(*command, "--url", f"sqlite:///{missing}", ok=False)
    refused(proc, 1, "no taskstore store")
    assert not missing.exists()


def test_queue_and_schedule_names_are_text_never_markup(url: str) -> None:
    asyncio.run(_add_schedules(url))
    cli("enqueue", "q", "k", "--id", "t\x1b[31m1", "--url", url)
    cli("cancel", "t\x1b[31m1", "--url", url)
    outputs = [
        cli("recurring", "ls", "--url", url).stdout,
        cli("tasks", "why", "t\x1b[31m1", "--url", url).stdout,
        cli("tasks", "why", "t\x1b[31m1", "--url", url, "--json").stdout,
    ]
    for out in outputs:
        assert "\x1b" not in out, out
    assert json.loads(outputs[2])
