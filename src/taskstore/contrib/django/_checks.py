"""Django system checks (``manage.py check``, run before ``runserver`` and ``migrate``): a misspelt
``TASKSTORE_*`` setting would otherwise be ignored without a word, and a bad store setting found only when
the first task is enqueued."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import checks

from ...errors import ConfigError
from ._settings import store_settings

KNOWN = frozenset(
    {
        "TASKSTORE_URL",
        "TASKSTORE_DATABASE",
        "TASKSTORE_OPTIONS",
        "TASKSTORE_APP",
        "TASKSTORE_AUTODISCOVER",
        "TASKSTORE_MIGRATE",
    }
)


def problems(found: Any) -> list[tuple[str, str]]:
    """``(id, message)`` for each problem with the taskstore settings of a settings object."""
    out = [
        ("taskstore.E001", f"unknown setting {name} (known: {', '.join(sorted(KNOWN))})")
        for name in sorted(dir(found))
        if name.startswith("TASKSTORE_") and name not in KNOWN
    ]
    try:
        store_settings(found)
    except ConfigError as exc:
        out.append(("taskstore.E002", str(exc)))
    app = getattr(found, "TASKSTORE_APP", None)
    if app is not None and (not isinstance(app, str) or ":" not in app):
        out.append(("taskstore.E003", f"TASKSTORE_APP must be MODULE:APP (e.g. shop.tasks:app), got {app!r}"))
    return out


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [checks.Error(message, id=check_id) for check_id, message in problems(settings)]
