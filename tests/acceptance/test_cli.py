"""The ``taskstore`` command, run as a user runs it: in a subprocess, against a SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "taskstore", *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def test_enqueue_then_list_show_and_count(url: str) -> None:
    task = cli_json("enqueue", "mail", "send", "--args", '{"to": "a@b"}', "--url", url)
    assert task["state"] == "queued"
    assert task["args"] == {"to": "a@b"}
    listed = cli_json("tasks", "ls", "--url", url)
    assert [t["id"] for t in listed["items"]] == [task["id"]]
    assert cli_json("tasks", "show", task["id"], "--url", url)["kind"] == "send"
    assert cli_json("tasks", "count", "--url", url)["queued"] == 1
    assert cli_json("tasks", "count", "--state", "queued", "--url", url) == {"count": 1}


def test_tables_for_people(url: str) -> None:
    cli("enqueue", "mail", "send", "--id", "welcome-1", "--url", url)
    table = cli("tasks", "ls", "--url", url).stdout
    assert "welcome-1" in table
    assert "queued" in table
    assert "total" in cli("tasks", "count", "--url", url).stdout


def test_filters_and_options(url: str) -> None:
    cli("enqueue", "mail", "send", "--priority", "5", "--url", url)
    cli("enqueue", "sms", "send", "--delay", "1h", "--max-attempts", "2", "--url", url)
    assert len(cli_json("tasks", "ls", "--queue", "sms", "--url", url)["items"]) == 1
    sms = cli_json("tasks", "ls", "--queue", "sms", "--url", url)["items"][0]
    assert sms["max_attempts"] == 2
    assert sms["run_at"] > sms["created_at"]
    assert cli_json("tasks", "ls", "--state", "dead", "--url", url)["items"] == []


def test_cancel_and_retry(url: str) -> None:
    cli("enqueue", "mail", "send", "--id", "t1", "--url", url)
    assert cli_json("cancel", "t1", "--url", url)["state"] == "cancelled"
    assert cli_json("retry", "t1", "--url", url)["state"] == "queued"


def test_reap_and_archive(url: str) -> None:
    cli("enqueue", "mail", "send", "--id", "t1", "--url", url)
    cli("cancel", "t1", "--url", url)
    assert cli_json("reap", "--url", url) == {"reaped": 0}
    assert cli_json("archive", "--older-than", "0s", "--url", url) == {"archived": 1}
    assert cli_json("tasks", "ls", "--archived", "--url", url)["items"][0]["id"] == "t1"
    assert cli_json("tasks", "show", "t1", "--archived", "--url", url)["state"] == "cancelled"


def test_default_url_comes_from_the_environment(tmp_path: Path) -> None:
    env_url = f"sqlite:///{tmp_path / 'env.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "taskstore", "enqueue", "mail", "send"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "TASKSTORE_URL": env_url},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "env.db").exists()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["enqueue", "mail", "send", "--args", "{bad"], 2, "not valid JSON"),
        (["enqueue", "Bad Queue", "send"], 1, "invalid queue name"),
        (["tasks", "show", "missing"], 1, "no taskstore store"),
        (["tasks", "ls", "--state", "weird"], 2, "is not one of"),
        (["archive", "--older-than", "soon"], 2, "not a duration"),
        (["bogus"], 2, "No such command"),
    ],
)
def test_bad_input_is_one_line_on_stderr(url: str, args: list[str], code: int, words: str) -> None:
    extra = ["--url", url] if args[0] != "bogus" else []
    proc = cli(*args, *extra, ok=False)
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    proc = cli("tasks", "ls", "--url", "sqlite:////no/such/dir/x.db", ok=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
