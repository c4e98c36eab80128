"""taskstore for Django projects (``pip install 'taskstore[django]'``).

    # settings.py
    INSTALLED_APPS = [..., "taskstore.contrib.django"]
    TASKSTORE_DATABASE = "default"        # the store lives in Django's database (the default), or:
    # TASKSTORE_URL = "postgresql://…"    # a store of its own
    TASKSTORE_OPTIONS = {"schema": "taskstore"}
    TASKSTORE_APP = "shop.tasks:app"      # what ``manage.py taskstore_worker`` runs by default

    # shop/tasks.py
    from taskstore.contrib.django import DjangoApp
    app = DjangoApp()                     # the URL is read from the settings when the store opens

    @app.task
    def ship(order_id: int) -> None:
        Order.objects.filter(pk=order_id).update(shipped=True)

    # shop/views.py
    with transaction.atomic():
        order = Order.objects.create(...)
        ship.options(conn=connection).enqueue_sync(order.pk)   # in this transaction: same database only
        enqueue_on_commit(ship, order.pk)                       # after it commits: any store

    $ python manage.py taskstore_worker            # or: DJANGO_SETTINGS_MODULE=… taskstore worker shop.tasks:app

A plain ``enqueue_sync`` inside ``atomic()`` does *not* join Django's transaction, even with the store in
the same database: it runs on the store's own connection and commits at once. Joining is spelled at the call
(``conn=connection``) because it changes what the call means: the task exists only if the caller commits,
a worker cannot see it before, and waiting for its result inside the block would wait forever.
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as exc:  # one clear line, not a traceback deep in an import
    raise ImportError(f"taskstore.contrib.django needs Django: pip install 'taskstore[django]' ({exc})") from exc

from ._app import DjangoApp
from ._hygiene import connections_middleware, install, recycled_connections
from ._on_commit import OnCommit, enqueue_on_commit
from ._settings import StoreSettings, database_url, store_settings

__all__ = [
    "DjangoApp",
    "OnCommit",
    "StoreSettings",
    "connections_middleware",
    "database_url",
    "enqueue_on_commit",
    "install",
    "recycled_connections",
    "store_settings",
]
