"""Settings of the test project; its database comes from ``$TEST_DJANGO_DATABASE`` (a PostgreSQL URL or a
SQLite file path), and the store lives in that same database (``TASKSTORE_DATABASE``)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

_database = os.environ.get("TEST_DJANGO_DATABASE", "django.sqlite3")


def _databases(where: str) -> dict[str, Any]:
    if where.startswith("postgresql://"):
        parts = urlsplit(where)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": parts.port or "",
            # Persistent connections, as production sets them: the worker test drops one between two tasks.
            "CONN_MAX_AGE": None,
            "CONN_HEALTH_CHECKS": True,
        }
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": where, "OPTIONS": {"timeout": 20}}


SECRET_KEY = "taskstore-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.integration.django_app.urls"
INSTALLED_APPS = ["taskstore.contrib.django", "tests.integration.django_app.shop"]
DATABASES = {"default": _databases(_database)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKSTORE_DATABASE = "default"
TASKSTORE_APP = "tests.integration.django_app.shop.tasks:app"
