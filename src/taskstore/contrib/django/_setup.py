"""Setting Django up in a worker process, before the App's module is imported (its tasks use models)."""

from __future__ import annotations

import os

from ...client import App
from ...errors import ConfigError


def setup_django() -> None:
    """``django.setup()`` with ``$DJANGO_SETTINGS_MODULE``; a settings module that fails is a ConfigError."""
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except (ImportError, ImproperlyConfigured) as exc:
        module = os.environ.get("DJANGO_SETTINGS_MODULE")
        raise ConfigError(f"could not set Django up with DJANGO_SETTINGS_MODULE={module}: {exc}") from exc


def prepare(app: App) -> App:
    """A worker's App in a Django process recycles Django's connections, whether or not it is a DjangoApp."""
    from ._hygiene import install

    return install(app)
