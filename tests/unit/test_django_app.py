"""DjangoApp and the worker command's options, without a Django project (Django's settings stay unconfigured)."""

from __future__ import annotations

import pytest

from taskstore import errors
from taskstore.contrib.django import DjangoApp, connections_middleware, install, recycled_connections
from taskstore.contrib.django.management.commands.taskstore_worker import worker_argv


@pytest.fixture(autouse=True)
def no_django_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.delenv("TASKSTORE_URL", raising=False)
    from django.conf import settings

    assert not settings.configured


@pytest.mark.asyncio
async def test_a_url_given_in_code_needs_no_settings() -> None:
    app = DjangoApp("memory://")
    assert app.name == __name__  # the module creating it, as for App
    async with app:
        store = await app.store()
        assert store.url == "memory://"
    assert "memory://" in repr(app)


def test_the_environments_url_does_not_replace_the_apps_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSTORE_URL", "sqlite:///elsewhere.db")
    app = DjangoApp("memory://")
    assert app.configured_url() == "memory://"
    assert app.open_store().url == "memory://"


def test_no_url_and_no_settings_is_a_clear_error_when_the_store_opens() -> None:
    app = DjangoApp()  # reading nothing yet: a tasks module imports before Django is set up
    assert "url from Django's settings" in repr(app)
    with pytest.raises(errors.ConfigError, match="DJANGO_SETTINGS_MODULE"):
        app.open_store()


def test_connection_recycling_is_installed_once() -> None:
    app = DjangoApp("memory://")
    install(app)
    assert app.thread_contexts == [recycled_connections]
    assert app.middlewares == [connections_middleware]


def test_worker_command_passes_only_the_options_given() -> None:
    options = {
        "target": "shop.tasks:app",
        "queue": ["mail", "shop"],
        "concurrency": 4,
        "prefetch": None,
        "grace": "10s",
        "worker_id": "w1",
        "no_maintenance": True,
        "log_level": None,
    }
    assert worker_argv(options) == [
        "worker",
        "shop.tasks:app",
        "--queue",
        "mail",
        "--queue",
        "shop",
        "--concurrency",
        "4",
        "--grace",
        "10s",
        "--worker-id",
        "w1",
        "--no-maintenance",
    ]
