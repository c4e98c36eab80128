"""The Django app (``"taskstore.contrib.django"`` in ``INSTALLED_APPS``): the ``taskstore_worker`` command,
the store's schema created by ``manage.py migrate`` (see ``_migrate``), checks of the ``TASKSTORE_*``
settings (``_checks``), and the ``tasks`` modules of the
installed apps imported once Django is ready, so a worker knows every task registered on its App wherever it
is declared (``TASKSTORE_AUTODISCOVER = False`` turns that off)."""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules

from ._checks import check_settings
from ._migrate import migrate_store


class TaskstoreConfig(AppConfig):
    name = "taskstore.contrib.django"
    label = "taskstore"
    verbose_name = "taskstore"

    def ready(self) -> None:
        checks.register(check_settings)
        post_migrate.connect(migrate_store, sender=self, dispatch_uid="taskstore.migrate_store")
        if getattr(settings, "TASKSTORE_AUTODISCOVER", True):
            autodiscover_modules("tasks")
