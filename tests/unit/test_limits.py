"""The bounds of ``taskstore.limits`` on every public input that needs no store: values, policies, options, URLs.

Store-level refusals (and the store still working after them) are in the conformance suite,
``taskstore.testing.suite_validation``, run on every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskstore
from taskstore import App, FakeClock, NewTask, RecurringTask, Worker, errors, limits
from taskstore.maintenance import MaintenanceConfig
from taskstore.retry import BinaryExponential, Exponential, Polynomial, policy_from_spec
from taskstore.schedule import parse_schedule
from taskstore.testing import _values as v

# -- retry policies ------------------------------------------------------------------------------


@given(v.policies(), st.integers(), st.floats(0.0, 1.0, exclude_max=True))
def test_a_policy_is_refused_or_its_delay_always_fits_a_datetime(make: Any, attempt: int, draw: float) -> None:
    try:
        policy = make()
    except errors.InvalidTask:
        return
    if not isinstance(policy, (Exponential, BinaryExponential, Polynomial)):
        return  # junk, refused by NewTask (tested below)
    delay = policy.delay(attempt, rand=lambda: draw)
    assert 0.0 <= delay <= limits.MAX_DURATION
    assert limits.LATEST + timedelta(seconds=delay) >= limits.LATEST  # no OverflowError


@pytest.mark.parametrize("attempt", [limits.INT32_MAX, 2**64, 10**80])
def test_polynomial_never_overflows(attempt: int) -> None:
    assert Polynomial().delay(attempt, rand=lambda: 0.0) == limits.MAX_DURATION


@pytest.mark.parametrize(
    "spec",
    [
        {"policy": "exponential", "base": 1e300, "cap": math.inf, "jitter": 0.25},
        {"policy": "binary_exponential", "base": -5.0, "cap": math.nan},
        {"policy": "exponential", "base": 2.0, "cap": 300.0, "jitter": 7.0},
    ],
)
def test_a_stored_policy_from_before_the_bounds_is_read_within_them(spec: dict[str, Any]) -> None:
    policy = policy_from_spec(spec)
    assert 0.0 <= policy.delay(10**6, rand=lambda: 0.5) <= limits.MAX_DURATION


def test_a_policy_takes_a_timedelta() -> None:
    assert Exponential(base=timedelta(seconds=3), cap=timedelta(minutes=1)).to_spec()["cap"] == 60.0


# -- NewTask and the values it holds --------------------------------------------------------------


_WILD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "queue": v.anything(v.texts),
    "kind": v.anything(v.texts),
    "id": v.anything(v.texts),
    "priority": v.anything(v.ints),
    "run_at": v.anything(v.datetimes),
    "max_attempts": v.anything(v.ints),
    "processing_timeout": v.anything(v.durations),
    "context": v.anything(st.dictionaries(v.texts, v.json_values, max_size=2)),
    "reference_id": v.anything(v.texts),
    "recurring_id": v.anything(v.texts),
    "group_id": v.anything(v.texts),
}


@settings(max_examples=200)
@given(st.sampled_from(sorted(_WILD_FIELDS)).flatmap(lambda f: st.tuples(st.just(f), _WILD_FIELDS[f])))
def test_a_new_task_is_refused_or_within_every_bound(wild: tuple[str, Any]) -> None:
    """Every field valid but one, drawn from anything: refused, or within the bounds every backend can hold."""
    fields = {"queue": "q", "kind": "k", wild[0]: wild[1]}
    try:
        new = NewTask(**fields)
    except errors.InvalidTask:
        return
    for name in (new.kind, new.id, new.reference_id, new.recurring_id, new.group_id):
        if name is not None:
            assert 0 < len(name) <= limits.MAX_NAME_LENGTH
            assert "\x00" not in name
            name.encode()  # no lone surrogate
    assert limits.INT32_MIN <= new.priority <= limits.INT32_MAX
    if new.max_attempts is not None:
        assert 1 <= new.max_attempts <= limits.INT32_MAX
    if new.processing_timeout is not None:
        assert isinstance(new.processing_timeout, float)
        assert 0 < new.processing_timeout <= limits.MAX_DURATION
    if new.run_at is not None:
        new.run_at.astimezone(UTC)  # a UTC form exists
        assert new.run_at + timedelta(seconds=limits.MAX_DURATION) > new.run_at


@pytest.mark.parametrize(
    "when",
    [
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
        limits.LATEST + timedelta(microseconds=1),
        datetime(2030, 1, 1),
    ],
)
def test_a_datetime_without_room_for_a_lease_is_refused(when: datetime) -> None:
    with pytest.raises(errors.InvalidTask, match="run_at"):
        NewTask("q", "k", run_at=when)


def test_the_bounds_themselves_are_accepted() -> None:
    new = NewTask(
        "q",
        "k" * limits.MAX_NAME_LENGTH,
        id="i" * limits.MAX_NAME_LENGTH,
        priority=limits.INT32_MIN,
        run_at=limits.LATEST,
        max_attempts=limits.INT32_MAX,
        processing_timeout=limits.MAX_DURATION,
    )
    assert new.processing_timeout == limits.MAX_DURATION


# -- schedules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["@every 99999999999d", "@every " + "9" * 400 + "s", "@every 101000d"])
def test_an_interval_past_the_bounds_is_refused(text: str) -> None:
    with pytest.raises(errors.InvalidTask, match="interval"):
        parse_schedule(text)


@pytest.mark.parametrize("text", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_that_never_matches_is_refused_when_asked_for_a_slot(text: str) -> None:
    with pytest.raises(errors.InvalidTask, match="no slot"):
        parse_schedule(text).next_slot(datetime(2030, 1, 1, tzinfo=UTC))


@given(v.anything(v.texts, st.sampled_from(["@every 30s", "*/5 * * * *", "0 0 30 2 *", "@every 0.001s"])))
def test_any_schedule_is_refused_or_gives_slots(text: Any) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        schedule = parse_schedule(text)
        slot = schedule.next_slot(now)
    except errors.InvalidTask:
        return
    assert now < slot <= limits.LATEST


# -- the App, the worker and maintenance options ----------------------------------------------------


def test_app_options_past_the_bounds_are_refused() -> None:
    app = App("memory://", clock=FakeClock())

    @app.task(queue="q")
    def job() -> None: ...

    for bad in ({"timeout": 1e12}, {"max_attempts": 2**31}, {"processing_timeout": math.inf}, {"priority": 2**40}):
        with pytest.raises(errors.InvalidTask):
            app.task(**bad)(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(errors.InvalidTask, match="delay"):
        job.options(delay=1e12)
    with pytest.raises(errors.InvalidTask, match="delay"):
        job.options(delay=-5)
    with pytest.raises(errors.InvalidTask, match="queue"):
        job.options(queue="")
    with pytest.raises(errors.InvalidTask, match="schedule"):
        app.recurring("never", task=job, cron="0 0 30 2 *")
    with pytest.raises(errors.InvalidTask, match="every"):
        app.recurring("too-slow", task=job, every=timedelta(days=100_000))


def test_a_long_recurring_interval_is_written_without_an_exponent() -> None:
    app = App("memory://", clock=FakeClock())

    @app.task(queue="q")
    def job() -> None: ...

    spec = app.recurring("monthly", task=job, every=timedelta(days=30))
    assert spec.schedule == "@every 2592000s"
    assert app.recurring("fast", task=job, every=0.5).schedule == "@every 0.5s"


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": 10**9},
        {"prefetch": -1},
        {"threads": 0},
        {"grace": math.inf},
        {"grace": -1.0},
        {"claim_wait": 0},
        {"claim_wait": math.nan},
        {"completion_batch": 0},
        {"completion_linger": 1e12},
        {"heartbeat_every": 0},
        {"worker_id": "w\x00"},
    ],
)
def test_worker_options_past_the_bounds_are_config_errors(options: dict[str, Any]) -> None:
    app = App("memory://")

    @app.task(queue="q")
    def job() -> None: ...

    with pytest.raises(errors.ConfigError):
        Worker(app, **options)


@pytest.mark.parametrize(
    "options",
    [{"reap_every": 0}, {"reap_every": math.inf}, {"archive_after": 1e12}, {"archive_after": -1}, {"purge_every": "x"}],
)
def test_maintenance_options_past_the_bounds_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        MaintenanceConfig(**options)


# -- URLs -----------------------------------------------------------------------------------------

_OPTION = st.sampled_from(["poll_interval", "heartbeat_retention", "busy_timeout", "synchronous", "bogus"])


@given(
    st.one_of(
        st.sampled_from(["memory://", "sqlite:///{dir}/t.db", "sqlite://", "sqlite:///", "redis://x", ""]),
        v.texts,
        st.builds(lambda path: "sqlite:///{dir}/" + path, v.texts),
    ),
    st.dictionaries(_OPTION, v.anything(st.sampled_from(["0.5", "30", "nan", "inf", "-1", "1e300", "FULL"]))),
)
@settings(max_examples=60)
def test_a_url_and_options_are_refused_as_config_or_open_a_working_store(
    tmp_path_factory: pytest.TempPathFactory, url: str, options: dict[str, Any]
) -> None:
    where = tmp_path_factory.mktemp("url")
    url = url.replace("{dir}", str(where))
    with contextlib.chdir(where):  # a relative SQLite path lands in the test's own directory
        try:
            store = taskstore.open(url or "memory://", **options)
        except errors.ConfigError:
            return
        _use(store, url)


def _use(store: taskstore.Store, url: str) -> None:
    async def use() -> None:
        async with store:
            task = await store.create(NewTask("q", "k"))
            (claimed,) = await store.claim("w", ["q"])
            assert claimed.id == task.id

    try:
        asyncio.run(use())
    except errors.BackendUnavailable:
        # A path SQLite cannot open (a directory, …), or a Redis host that does not resolve (redis://x).
        assert url.lower().startswith(("sqlite:", "redis:")), url
    except errors.ConfigError:
        # The store opens lazily: a missing folder is found, as a configuration error, at first use.
        assert url.lower().startswith("sqlite:"), url


@pytest.mark.parametrize("url", ["sqlite:///a\x00.db", "sqlite:///\ud800.db", "sqlite:///x.db?busy_timeout=inf"])
def test_a_url_no_backend_can_use_is_a_config_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        taskstore.open(url)


@pytest.mark.parametrize("options", [{"clock": "now"}, {"codec": "json"}, {"codec": object()}])
def test_a_clock_or_codec_that_is_not_one_is_a_config_error(options: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        taskstore.open("memory://", **options)


def test_recurring_ids_leave_room_for_the_slot() -> None:
    with pytest.raises(errors.InvalidTask):
        RecurringTask("r" * (limits.MAX_RECURRING_ID_LENGTH + 1), "@every 1s", NewTask("q", "k"))
