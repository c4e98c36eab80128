"""The CLI's values (durations, numbers, payloads, names) are refused in one line with a usage or input error.

A value past ``taskstore.limits`` is refused before anything is stored, never with a traceback, and
whatever was typed, the store keeps working afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskstore
from taskstore import Failure, NewTask, State
from taskstore.cli import main
from taskstore.testing import _values as v


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(*args: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskstore", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def refused(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


async def _count(url: str) -> int:
    async with taskstore.open(url) as store:
        return await store.count()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["enqueue", "q", "k", "--delay", "99999999999999w"], 2, "100 years"),
        (["enqueue", "q", "k", "--delay", "9" * 400 + "s"], 2, "100 years"),
        (["enqueue", "q", "k", "--delay", "5300w"], 2, "100 years"),
        (["enqueue", "q", "k", "--args", "[" * 50_000 + "]" * 50_000], 2, "nested too deeply"),
        (["enqueue", "q", "k", "--priority", "99999999999"], 1, "priority"),
        (["enqueue", "q", "k", "--max-attempts", str(2**31)], 1, "max_attempts"),
        (["enqueue", "q", "k", "--id", "x" * 300], 1, "id"),
        (["enqueue", "q", b"bad\xff"], 1, "kind"),
        (["archive", "--older-than", "300000w"], 2, "100 years"),
    ],
)
def test_a_value_past_the_bounds_is_one_line_and_stores_nothing(
    url: str, args: list[str | bytes], code: int, words: str
) -> None:
    refused(run(*args, "--url", url), code, words)
    assert asyncio.run(_count(url)) == 0


_APP = """
import taskstore

app = taskstore.App()


@app.task(queue="q")
def job() -> None:
    pass
"""


@pytest.mark.parametrize(
    ("option", "code", "words"),
    [
        (["--reap-every", "0"], 1, "reap_every"),
        (["--grace", "99999999w"], 2, "100 years"),
        (["--archive-after", "300000w"], 2, "100 years"),
        (["--concurrency", "1000000000"], 1, "concurrency"),
    ],
)
def test_worker_options_past_the_bounds_stop_it_before_it_starts(
    url: str, tmp_path: Path, option: list[str], code: int, words: str
) -> None:
    (tmp_path / "values_app.py").write_text(_APP)
    refused(run("worker", "values_app:app", *option, "--url", url, cwd=tmp_path), code, words)


# -- anything typed at all -------------------------------------------------------------------------

# Text as a shell can pass it: no NUL, but undecodable bytes arrive as lone surrogates.
_typed = st.text(st.characters(exclude_characters="\x00", exclude_categories=()), max_size=20)
_durations = st.one_of(
    st.sampled_from(["0", "30s", "1.5h", "5200w", "5300w", "300000w", "99999999999999w", "9" * 400, "1e3s", "-1s"]),
    st.from_regex(r"[0-9]{1,25}(\.[0-9]{1,5})?(ms|s|m|h|d|w)?", fullmatch=True),
    _typed,
)
_numbers = st.one_of(st.integers().map(str), st.sampled_from([str(n) for n in v.EDGE_INTS]), _typed)
_names = st.one_of(st.sampled_from(["q", "k", "normal", "t1"]), _typed)
_json = st.one_of(st.sampled_from(["null", "{}", "[1]", '"\\u0000"', '"\\ud800"', "1e999", "NaN"]), _typed)


def _options(**choices: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    pairs = [st.one_of(st.just([]), value.map(lambda x, f=flag: [f, x])) for flag, value in choices.items()]
    return st.tuples(*pairs).map(lambda parts: [word for part in parts for word in part])


_commands = st.one_of(
    st.tuples(
        st.just(["enqueue"]),
        st.tuples(_names, _names).map(list),
        _options(
            **{
                "--args": _json,
                "--id": _names,
                "--priority": _numbers,
                "--delay": _durations,
                "--max-attempts": _numbers,
            }
        ),
    ).map(lambda t: t[0] + t[1] + t[2]),
    _options(**{"--older-than": _durations}).map(lambda o: ["archive", *o]),
    _options(**{"--state": _names, "--queue": _names, "--limit": _numbers}).map(lambda o: ["tasks", "ls", *o]),
    _options(**{"--state": _names, "--queue": _names}).map(lambda o: ["tasks", "count", *o]),
    st.tuples(st.sampled_from([["tasks", "show"], ["cancel"], ["retry"]]), _names).map(lambda t: [*t[0], t[1]]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=_commands)
def test_any_command_line_exits_cleanly_and_the_store_keeps_working(url: str, argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main([*argv, "--url", url])
    assert exited.value.code in (0, 1, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    asyncio.run(_still_works(url))


async def _still_works(url: str) -> None:
    async with taskstore.open(url) as store:
        for task in await store.claim("checker", None, limit=1000):
            await store.mark_failed(task, Failure("Checked", "the check fails what it claims"))
        await store.list(limit=1000)
        made = await store.create(NewTask("normal-check", "k"))
        (claimed,) = await store.claim("checker", ["normal-check"])
        assert claimed.id == made.id
        assert (await store.mark_done(claimed)).state is State.DONE
