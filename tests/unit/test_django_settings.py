"""taskstore.contrib.django's settings: which store a Django project's settings name (pure, no project)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from taskstore.contrib.django import StoreSettings, database_url, store_settings
from taskstore.errors import ConfigError

PG = "django.db.backends.postgresql"


def settings(**values: Any) -> SimpleNamespace:
    return SimpleNamespace(**values)


def test_postgres_database_becomes_a_url_with_quoted_credentials_and_libpq_options() -> None:
    url = database_url(
        "default",
        {
            "ENGINE": PG,
            "NAME": "shop db",
            "USER": "app@x",
            "PASSWORD": "p:ss/w@rd",
            "HOST": "db.internal",
            "PORT": 5433,
            "OPTIONS": {"sslmode": "require", "options": "-c search_path=shop", "isolation_level": 2, "pool": True},
        },
    )
    assert url == (
        "postgresql://app%40x:p%3Ass%2Fw%40rd@db.internal:5433/shop%20db"
        "?options=-c%20search_path%3Dshop&sslmode=require"  # Django-side options (isolation_level, pool) left out
    )


def test_postgres_socket_directory_and_ipv6_hosts() -> None:
    assert database_url("d", {"ENGINE": PG, "NAME": "n", "HOST": "/run/postgresql"}) == (
        "postgresql:///n?host=%2Frun%2Fpostgresql"
    )
    assert database_url("d", {"ENGINE": PG, "NAME": "n", "HOST": "::1", "PORT": "5432"}) == "postgresql://[::1]:5432/n"
    assert database_url("d", {"ENGINE": "django.contrib.gis.db.backends.postgis", "NAME": "n"}) == "postgresql:///n"


def test_sqlite_database_becomes_an_absolute_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = database_url("default", {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"})
    assert url == f"sqlite:///{tmp_path.resolve() / 'db.sqlite3'}"
    assert url.startswith("sqlite:////")


@pytest.mark.parametrize("name", [":memory:", "file:memdb1?mode=memory&cache=shared", "", None])
def test_in_memory_sqlite_is_refused(name: str | None) -> None:
    with pytest.raises(ConfigError, match="in-memory SQLite"):
        database_url("default", {"ENGINE": "django.db.backends.sqlite3", "NAME": name})


@pytest.mark.parametrize("engine", ["django.db.backends.mysql", "django.db.backends.oracle", ""])
def test_other_engines_are_a_clear_error(engine: str) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL or SQLite database only; set TASKSTORE_URL"):
        database_url("default", {"ENGINE": engine, "NAME": "x"})


def test_no_taskstore_settings_means_the_default_database() -> None:
    found = store_settings(settings(DATABASES={"default": {"ENGINE": PG, "NAME": "shop"}}))
    assert found == StoreSettings("postgresql:///shop", "default", {})


def test_taskstore_database_names_the_alias_and_options_apply() -> None:
    found = store_settings(
        settings(
            DATABASES={"default": {"ENGINE": "django.db.backends.mysql"}, "jobs": {"ENGINE": PG, "NAME": "jobs"}},
            TASKSTORE_DATABASE="jobs",
            TASKSTORE_OPTIONS={"schema": "queue"},
        )
    )
    assert found == StoreSettings("postgresql:///jobs", "jobs", {"schema": "queue"})


def test_taskstore_url_wins_over_databases() -> None:
    found = store_settings(
        settings(DATABASES={"default": {"ENGINE": "django.db.backends.mysql"}}, TASKSTORE_URL="sqlite:///q.db")
    )
    assert found == StoreSettings("sqlite:///q.db", None, {})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"TASKSTORE_URL": "sqlite:///q.db", "TASKSTORE_DATABASE": "default"}, "not both"),
        ({"TASKSTORE_DATABASE": "nope"}, r"'nope', which is not in DATABASES \(known: default\)"),
        ({"TASKSTORE_DATABASE": 1}, "must name an alias"),
        ({"TASKSTORE_URL": ""}, "must be a store URL"),
        ({"TASKSTORE_OPTIONS": ["schema"]}, "must be a dict"),
    ],
)
def test_bad_settings_are_config_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        store_settings(settings(DATABASES={"default": {"ENGINE": PG, "NAME": "x"}}, **values))


def test_a_given_url_wins_and_keeps_the_settings_options() -> None:
    found = store_settings(
        settings(DATABASES={"default": {"ENGINE": "django.db.backends.mysql"}}, TASKSTORE_OPTIONS={"pool_max": 4}),
        "postgresql:///q",
    )
    assert found == StoreSettings("postgresql:///q", None, {"pool_max": 4})


def test_system_checks_name_misspelt_settings_and_bad_values() -> None:
    from taskstore.contrib.django._checks import problems

    ok = settings(DATABASES={"default": {"ENGINE": PG, "NAME": "x"}}, TASKSTORE_APP="shop.tasks:app")
    assert problems(ok) == []
    bad = settings(
        DATABASES={"default": {"ENGINE": "django.db.backends.mysql"}},
        TASKSTORE_DATABSE="default",
        TASKSTORE_APP="shop.tasks",
    )
    found = problems(bad)
    assert [check_id for check_id, _ in found] == ["taskstore.E001", "taskstore.E002", "taskstore.E003"]
    assert "unknown setting TASKSTORE_DATABSE" in found[0][1]
    assert "PostgreSQL or SQLite database only" in found[1][1]
