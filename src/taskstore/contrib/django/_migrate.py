"""``manage.py migrate`` creates or upgrades the store's schema too (``TASKSTORE_MIGRATE = False``: not).

Not only for tidiness: on SQLite, a store first opened inside ``atomic()`` after a write would create its
schema while Django's transaction holds the database's write lock, and wait for it until the busy timeout.
Created by ``migrate``, the store opens without writing. Where the store lives in a Django database it is
migrated with that alias; a store of its own (``TASKSTORE_URL``) with the default alias.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

from ..._connect import open as open_store
from ..._connect import redact
from ...errors import ConfigError, TaskstoreError
from ._settings import StoreSettings, store_settings


def migrate_store(sender: Any, *, using: str = DEFAULT_DB_ALIAS, verbosity: int = 1, **kwargs: Any) -> None:
    """A ``post_migrate`` receiver: open the store the settings name, which creates or upgrades its schema."""
    if not getattr(settings, "TASKSTORE_MIGRATE", True):
        return
    try:
        found = store_settings(settings)
    except ConfigError as exc:  # e.g. a test run on in-memory SQLite: no store to migrate there
        if verbosity >= 1:
            print(f"  taskstore: no store migrated ({exc})")
        return
    if (found.database or DEFAULT_DB_ALIAS) != using:
        return
    try:
        asyncio.run(_open(found))
    except TaskstoreError as exc:
        raise ConfigError(f"taskstore could not migrate its store at {redact(found.url)}: {exc}") from exc
    if verbosity >= 1:
        print(f"  taskstore: store at {redact(found.url)} is up to date")


async def _open(found: StoreSettings) -> None:
    async with open_store(found.url, **found.options):
        pass
