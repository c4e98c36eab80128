"""``taskstore tasks show`` lists a task's attempts: the failed ones kept in ``Task.failures``, then its success."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

import taskstore
from taskstore import Failure, FakeClock, NewTask

from .test_cli import cli, cli_json


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


SMTP = Failure(
    type="SMTPError", message="421 try later\x1b[2J", traceback="Traceback (most recent call last):\nSMTPError"
)


async def _fail_twice_then_succeed(url: str) -> str:
    clock = FakeClock(datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    async with taskstore.open(url, clock=clock) as store:
        task = await store.create(NewTask("mail", "send", max_attempts=5, processing_timeout=30))
        (first,) = await store.claim("w-1", ["mail"], limit=1)
        clock.advance(2)
        await store.mark_failed(first, SMTP, retry_in=0)
        await store.claim("w-2", ["mail"], limit=1)
        clock.advance(31)
        assert await store.reap() == 1
        clock.advance(3600)
        (third,) = await store.claim("w-3", ["mail"], limit=1)
        clock.advance(1)
        await store.mark_done(third, result="sent")
        return task.id


def test_tasks_show_lists_the_attempts(url: str) -> None:
    task_id = asyncio.run(_fail_twice_then_succeed(url))
    out = cli("tasks", "show", task_id, "--url", url).stdout
    assert "\x1b" not in out  # the failure's message is task data: printed escaped
    rows = [line.replace("┃", "│") for line in out.splitlines() if line.startswith(("│", "┃"))]
    assert [[cell.strip() for cell in row.strip("│").split("│")] for row in rows] == [
        ["#", "ended at", "worker", "outcome", "failure"],
        ["1", "2026-05-04 12:00:02", "w-1", "failed", "SMTPError: 421 try later\\x1b[2J"],
        [
            "2",
            "2026-05-04 12:00:33",
            "w-2",
            "timed out",
            "timed_out: lease of worker 'w-2' timed out at 2026-05-04T12:00:32+00:00",
        ],
        ["3", "2026-05-04 13:00:34", "-", "done", ""],
    ]


def test_tasks_show_json_carries_every_failure(url: str) -> None:
    task_id = asyncio.run(_fail_twice_then_succeed(url))
    shown = cli_json("tasks", "show", task_id, "--url", url)
    assert shown["state"] == "done"
    assert shown["result"]["value"] == "sent"
    first, second = shown["failures"]
    assert first == {
        "attempt": 1,
        "ended_at": "2026-05-04T12:00:02+00:00",
        "worker_id": "w-1",
        "failure": {
            "type": "SMTPError",
            "message": "421 try later\x1b[2J",
            "traceback": "Traceback (most recent call last):\nSMTPError",
            "retryable": True,
            "data": None,
        },
    }
    assert (second["attempt"], second["worker_id"], second["failure"]["type"]) == (2, "w-2", "timed_out")


def test_a_task_that_never_ran_shows_no_attempts(url: str) -> None:
    task_id = cli_json("enqueue", "mail", "send", "--url", url)["id"]
    assert "attempts" in cli("tasks", "show", task_id, "--url", url).stdout  # the attempts/max_attempts fields
    assert "ended at" not in cli("tasks", "show", task_id, "--url", url).stdout
    assert cli_json("tasks", "show", task_id, "--url", url)["failures"] == []
