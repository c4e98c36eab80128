"""The ``taskstore`` command, run as a user runs it: in a subprocess, against a SQLite file."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ..postgres_server import new_schema


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def cli(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "taskstore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=None if env is None else {**os.environ, **env},
    )
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
    cli("enqueue", "sms", "remind", "--url", url)
    assert [t["kind"] for t in cli_json("tasks", "ls", "--kind", "remind", "--url", url)["items"]] == ["remind"]


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
        (["enqueue", "mail", "send", "--delay", "99999999999999w"], 2, ""),
        (["enqueue", "mail", "send", "--delay", "1000000w"], 2, ""),
        (["enqueue", "mail", "send", "--args", "[" * 20_000 + "]" * 20_000], 2, "nested too deeply"),
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
    assert "\x1b" not in proc.stderr


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    proc = cli("tasks", "ls", "--url", "sqlite:////no/such/dir/x.db", ok=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


MARKUP_KINDS = ["[/bold]", "[link=https://evil.example]click here[/link]", "[bold red]loud", "\\[escaped"]


def test_task_data_is_text_never_markup(url: str) -> None:
    ids = [cli_json("enqueue", "mail", kind, "--url", url)["id"] for kind in MARKUP_KINDS]
    assert [t["kind"] for t in cli_json("tasks", "ls", "--url", url)["items"]] == MARKUP_KINDS
    table = cli("tasks", "ls", "--url", url).stdout
    for kind in MARKUP_KINDS:
        assert kind in table
    for task_id, kind in zip(ids, MARKUP_KINDS, strict=True):
        assert kind in cli("tasks", "show", task_id, "--url", url).stdout
    said = cli("enqueue", "mail", "[/bold]", "--id", "[/i]", "--url", url).stdout
    assert said.strip() == "enqueued [/i] on mail ([/bold])"
    assert cli("cancel", "[/i]", "--url", url).stdout.strip() == "[/i] is cancelled"
    assert cli("retry", "[/i]", "--url", url).stdout.strip() == "[/i] is queued"


def test_no_fake_links_on_a_terminal(url: str) -> None:
    cli("enqueue", "mail", MARKUP_KINDS[1], "--url", url)
    # FORCE_COLOR makes rich write for a terminal: styles, and hyperlinks (OSC 8) if markup asked for one.
    out = cli("tasks", "ls", "--url", url, env={"FORCE_COLOR": "1", "COLUMNS": "250"}).stdout
    assert "\x1b]8;" not in out
    assert MARKUP_KINDS[1] in out


def test_control_characters_in_task_data_are_escaped(url: str) -> None:
    kind = "send\x1b[2J\x1b]0;pwned\x07\u009b31m\u202edone"
    task = cli_json("enqueue", "mail", kind, "--id", "t\x1b[31m1", "--url", url)
    assert task["kind"] == kind  # stored as given: only printing escapes
    outputs = [
        cli("enqueue", "mail", kind, "--url", url).stdout,
        cli("tasks", "ls", "--url", url).stdout,
        cli("tasks", "show", "t\x1b[31m1", "--url", url).stdout,
        cli("cancel", "t\x1b[31m1", "--url", url).stdout,
        cli("tasks", "watch", "t\x1b[31m1", "--url", url).stdout,
        cli("tasks", "ls", "--url", url, "--json").stdout,
        cli("tasks", "watch", "t\x1b[31m1", "--url", url, "--json").stdout,
    ]
    for out in outputs:
        assert not any(c in out for c in "\x1b\x07\u009b\u202e"), out
    assert "send\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202edone" in outputs[1]
    assert json.loads(outputs[5])["items"][0]["kind"] == kind


def test_read_only_commands_create_no_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    for path in (missing, foreign):
        for command in (
            ["tasks", "ls"],
            ["tasks", "count"],
            ["tasks", "show", "x"],
            ["tasks", "watch", "x"],
            ["workers"],
        ):
            proc = cli(*command, "--url", f"sqlite:///{path}", ok=False)
            assert proc.returncode == 1, (command, proc.stderr)
            assert proc.stderr.strip().splitlines() == [f"error: no taskstore store at '{path}' (nothing was created)"]
    assert not missing.exists()
    with sqlite3.connect(foreign) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_watch_of_an_unknown_id_says_not_found(url: str) -> None:
    cli("enqueue", "mail", "send", "--url", url)
    proc = cli("tasks", "watch", "nope", "--url", url, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: task 'nope' not found"]


def test_watch_wait_follows_a_task_that_appears_later(url: str) -> None:
    cli("enqueue", "mail", "send", "--url", url)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "taskstore", "tasks", "watch", "later", "--wait", "--json", "--url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        cli("enqueue", "mail", "send", "--id", "later", "--url", url)
        assert json.loads(watcher.stdout.readline())["state"] == "queued"  # blocks until the watcher saw it
        cli("cancel", "later", "--url", url)
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert [json.loads(line)["state"] for line in out.splitlines()] == ["cancelled"]


# -- PostgreSQL URLs: the forms libpq accepts, failures in one line, passwords never shown --


def _pg(postgres_db: str, *, netloc: str | None = None, path: str | None = None, query: str = "") -> str:
    parts = urlsplit(postgres_db)
    return urlunsplit(("postgresql", netloc or parts.netloc, path or parts.path, query, ""))


def test_postgres_url_with_host_and_user_in_the_query(postgres_db: str) -> None:
    parts = urlsplit(postgres_db)
    host, port, user = parts.hostname, parts.port or 5432, parts.username
    url = f"postgresql://{parts.path}?host={host}&port={port}&user={user}&schema={new_schema()}"
    assert url.startswith("postgresql:///")
    task = cli_json("enqueue", "mail", "send", "--url", url)
    assert [t["id"] for t in cli_json("tasks", "ls", "--url", url)["items"]] == [task["id"]]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("closed port", "Connection refused"),
        ("bad database", 'database "no_such_db_here" does not exist'),
        ("bad role", 'role "no_such_role_here\\x1b[2J" does not exist'),  # the server's words, escaped
    ],
)
def test_postgres_connection_failures_are_one_line_and_quick(postgres_db: str, case: str, words: str) -> None:
    parts = urlsplit(postgres_db)
    timeout = 3 if case == "closed port" else 60  # a refusal that cannot change is never retried
    netloc = {
        "closed port": f"x:s3cret@{parts.hostname}:1",
        "bad database": f"x:s3cret@{parts.hostname}:{parts.port or 5432}",
        "bad role": f"no_such_role_here%1B[2J:s3cret@{parts.hostname}:{parts.port or 5432}",
    }[case]
    dbname = "/no_such_db_here" if case == "bad database" else parts.path
    if case == "bad database":
        netloc = netloc.replace("x:", f"{parts.username}:")
    url = _pg(postgres_db, netloc=netloc, path=dbname, query=f"connect_timeout={timeout}")
    started = time.monotonic()
    proc = cli("tasks", "ls", "--url", url, ok=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert words in lines[0]
    assert "s3cret" not in proc.stderr
    assert "\x1b" not in proc.stderr
    assert elapsed < 30, elapsed  # the interpreter's start under load, plus at most connect_timeout


def test_a_server_that_never_answers_is_given_up_on_after_connect_timeout() -> None:
    with socket.socket() as silent:  # the handshake completes in the kernel; nothing ever replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        proc = cli("tasks", "ls", "--url", f"postgresql://x@127.0.0.1:{port}/db?connect_timeout=2", ok=False)
        elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: cannot connect to PostgreSQL: no answer within 2s (connect_timeout)"
    ]
    assert 2 <= elapsed < 30, elapsed


def test_passwords_are_never_printed(postgres_db: str) -> None:
    parts = urlsplit(postgres_db)
    netloc = f"{parts.username}:s3cret@{parts.hostname}:{parts.port or 5432}"
    url = _pg(postgres_db, netloc=netloc, query=f"schema={new_schema()}")  # trust auth: the password is ignored
    out = cli("migrate", "--url", url).stdout
    assert "s3cret" not in out
    assert f"{parts.username}:***@" in out
    for bad in (f"{url}&pool_min=none", url.replace("postgresql:", "mysql:"), f"{url}&password=s3cret&bogus=1"):
        proc = cli("tasks", "ls", "--url", bad, ok=False)
        assert proc.returncode == 1
        assert "s3cret" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
