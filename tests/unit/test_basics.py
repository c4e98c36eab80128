"""Clock, codec, ids, URLs and the error tree."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import taskstore
from taskstore import FakeClock, JsonCodec, errors
from taskstore._ids import lease_token, task_id
from taskstore.codec import UndecodablePayload, decode, encode


def test_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(datetime(2031, 5, 1, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2031, 5, 1, tzinfo=UTC)
    clock.advance(1.5)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == datetime(2031, 5, 1, 0, 1, 1, 500000, tzinfo=UTC)
    clock.set(datetime(2020, 1, 1, tzinfo=UTC))
    assert clock.now().year == 2020


def test_fake_clock_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2030, 1, 1))


def test_system_clock_is_utc() -> None:
    assert taskstore.SystemClock().now().tzinfo is not None


def test_json_codec_is_strict_and_never_pickles() -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode({"a": [1, "é", None]})) == {"a": [1, "é", None]}
    for bad in (float("nan"), {1, 2}, object()):
        with pytest.raises(errors.InvalidTask):
            encode(codec, bad, "args")


def test_undecodable_bytes_come_back_marked() -> None:
    value = decode(JsonCodec(), b"\x80not json")
    assert isinstance(value, UndecodablePayload)
    assert value.data == b"\x80not json"


def test_task_ids_are_uuid7_unique_and_increasing() -> None:
    ids = [task_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert ids == sorted(ids)
    assert all(i[14] == "7" and len(i) == 36 for i in ids)


def test_lease_tokens_are_unguessable_hex() -> None:
    tokens = {lease_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == 32 for t in tokens)


def test_errors_share_one_root() -> None:
    for name in (
        "NotFound",
        "AlreadyExists",
        "StaleVersion",
        "NotClaimed",
        "NotOwned",
        "ReportFromThePast",
        "InvalidTask",
        "ConfigError",
        "BackendUnavailable",
    ):
        assert issubclass(getattr(errors, name), errors.TaskstoreError)
    assert issubclass(errors.NotOwned, errors.LeaseError)
    assert issubclass(errors.NotClaimed, errors.LeaseError)


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://relative.db", "nonsense", "sqlite:///x.db?colour=red"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(errors.ConfigError):
        taskstore.open(url)


def test_redis_urls_open_the_redis_backend_and_check_its_options() -> None:
    pytest.importorskip("redis")
    from taskstore.backends.redis import RedisDriver

    store = taskstore.open("redis://localhost:6379/0?prefix=app1:")  # opening connects lazily, at first use
    assert isinstance(store._driver, RedisDriver)
    assert store._driver.prefix == "app1:"
    assert isinstance(taskstore.open("rediss://localhost:6380/1")._driver, RedisDriver)
    with pytest.raises(errors.ConfigError):
        taskstore.open("redis://localhost:6379/0?prefix=has space")
    with pytest.raises(errors.ConfigError):
        taskstore.open("redis://localhost:6379/0", busy_timeout=1)


@pytest.mark.parametrize(
    "url", ["postgresql://h/db?schema=Bad-Name", "postgresql://h/db?pool_min=0", "postgresql://h/db?notify=maybe"]
)
def test_bad_postgres_options_are_config_errors(url: str) -> None:
    with pytest.raises(errors.ConfigError):
        taskstore.open(url)


def test_postgres_urls_keep_libpq_options() -> None:
    store = taskstore.open("postgres://u@h:5433/db?sslmode=disable&schema=jobs&pool_max=4")
    driver = store._driver  # type: ignore[attr-defined]
    assert driver.schema == "jobs"
    assert driver.conninfo == "postgresql://u@h:5433/db?sslmode=disable"


def test_an_unreachable_postgres_is_backend_unavailable() -> None:
    async def go() -> None:
        async with taskstore.open("postgresql://nobody@127.0.0.1:9/db?connect_timeout=1"):
            pass

    with pytest.raises(errors.BackendUnavailable):
        asyncio.run(go())


def test_default_url_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKSTORE_URL", raising=False)
    assert taskstore.default_url() == "sqlite:///taskstore.db"
    monkeypatch.setenv("TASKSTORE_URL", "memory://")
    assert taskstore.default_url() == "memory://"


def test_sqlite_url_forms(tmp_path: object) -> None:
    assert taskstore.open("sqlite:///rel.db")._driver.path == "rel.db"  # type: ignore[attr-defined]
    assert taskstore.open("sqlite:////abs/x.db")._driver.path == "/abs/x.db"  # type: ignore[attr-defined]


def test_sqlite_in_a_missing_directory_is_a_config_error() -> None:
    async def go() -> None:
        async with taskstore.open("sqlite:////no/such/dir/x.db"):
            pass

    with pytest.raises(errors.ConfigError):
        asyncio.run(go())
