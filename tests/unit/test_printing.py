"""Text fit for a terminal and URLs fit to print: task data never acts on the terminal, passwords never show."""

from __future__ import annotations

import io
import json
import logging

import pytest
from rich.console import Console

import taskstore
from taskstore._connect import _POSTGRES_OPTIONS, _strip_query, redact, scrub
from taskstore._render import json_text, printable
from taskstore.cli import _LogFormatter
from taskstore.demo import Snapshot, summarize
from taskstore.model import State

NASTY = "a\x1b[2Jb\x07c\x9bd\u202ee\ud800f\n"


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    assert printable(NASTY) == "a\\x1b[2Jb\\x07c\\x9bd\\u202ee\\ud800f\\n"
    assert printable("plain [bold] é 👍 \\ tab") == "plain [bold] é 👍 \\ tab"


def test_json_text_escapes_them_too_and_stays_json() -> None:
    value = {"kind": NASTY, "ok": "é"}
    text = json_text(value)
    assert not any(c in text for c in "\x1b\x07\x9b\u202e\ud800")
    assert "é" in text
    assert json.loads(text) == value
    text.encode("utf-8")  # a lone surrogate printed raw would fail right here


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cr%40t@h:5432/db?sslmode=disable", "postgresql://u:***@h:5432/db?sslmode=disable"),
        ("postgres://u:pw@h1:5432,h2:5433/db", "postgres://u:***@h1:5432,h2:5433/db"),
        (
            "postgresql:///db?host=/run/pg&user=u&password=pw&schema=x",
            "postgresql:///db?host=/run/pg&user=u&password=***&schema=x",
        ),
        ("postgresql://u:p@w@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///tasks.db", "sqlite:///tasks.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_hides_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_scrub_removes_a_password_from_any_message() -> None:
    url = "postgresql://u:s3cr%40t@h/db?password=other"
    assert scrub("failed for s3cr@t, s3cr%40t and other", url) == "failed for ***, *** and ***"


@pytest.mark.parametrize(
    ("url", "conninfo"),
    [
        ("postgresql:///db?host=/run/postgresql&user=u&schema=s", "postgresql:///db?host=/run/postgresql&user=u"),
        ("postgres://u@h/db?options=-c%20a%3Db+c&pool_max=3", "postgresql://u@h/db?options=-c%20a%3Db+c"),
        ("postgresql://", "postgresql://"),
        ("postgresql://[::1]:5433/db?sslmode=require&notify=off", "postgresql://[::1]:5433/db?sslmode=require"),
    ],
)
def test_postgres_urls_reach_libpq_unchanged_but_for_our_options(url: str, conninfo: str) -> None:
    assert _strip_query(url, _POSTGRES_OPTIONS) == conninfo


def test_every_uri_form_libpq_reads_opens() -> None:
    store = taskstore.open("postgresql:///db?host=/run/postgresql&user=u&schema=jobs")
    assert store._driver._key[1:4] == ("/run/postgresql", "", "db")  # type: ignore[attr-defined]


def test_a_url_libpq_refuses_is_a_config_error_without_its_password() -> None:
    with pytest.raises(taskstore.errors.ConfigError) as caught:
        taskstore.open("postgresql://u:s3cret@h/db?password=s3cret&no_such_option=1")
    assert "s3cret" not in str(caught.value)


def test_repr_of_app_and_store_hide_the_password() -> None:
    url = "postgresql://u:s3cret@h/db?schema=jobs"
    assert "s3cret" not in repr(taskstore.App(url))
    assert "s3cret" not in repr(taskstore.open(url))
    assert "u:***@h" in repr(taskstore.open(url))


def test_the_demo_hints_hide_the_password() -> None:
    out = io.StringIO()
    snap = Snapshot(dict.fromkeys(State, 0), 1.0)
    summarize(Console(file=out, width=200), snap, 0, "demo-q", "postgresql://u:s3cret@h/db", [])
    assert "s3cret" not in out.getvalue()
    assert "--url 'postgresql://u:***@h/db'" in out.getvalue()


def test_worker_logs_keep_one_record_on_one_line() -> None:
    record = logging.LogRecord("taskstore.worker", logging.WARNING, __file__, 1, "task %s failed", (NASTY,), None)
    line = _LogFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING task a\\x1b[2Jb\\x07c\\x9bd\\u202ee\\ud800f\\n failed"


def test_the_demo_hints_need_no_url_when_it_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSTORE_URL", "postgresql://u:s3cret@h/db")
    out = io.StringIO()
    summarize(
        Console(file=out, width=200), Snapshot(dict.fromkeys(State, 0), 1.0), 0, "q", "postgresql://u:s3cret@h/db", []
    )
    assert "s3cret" not in out.getvalue()
    assert "--url" not in out.getvalue()
