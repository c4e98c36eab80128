"""``DjangoApp``: an App whose store comes from Django's settings, read when the store opens."""

from __future__ import annotations

from typing import Any

from ... import errors
from ..._connect import open as open_store
from ..._connect import redact
from ...client import App, _creator_module
from ...store import Store
from ._hygiene import install
from ._settings import StoreSettings, store_settings


class DjangoApp(App):
    """A ``taskstore.App`` for a Django project.

    - With no ``url``, the store is the one Django's settings name (``TASKSTORE_URL``, ``TASKSTORE_DATABASE``,
      else ``DATABASES["default"]``: see ``_settings``), read when the store first opens, not at import:
      a tasks module can be imported before Django is set up, and tests can change the settings first.
    - Its workers recycle Django's database connections around every handler (``_hygiene``).

    ``taskstore worker myproj.tasks:app`` sets Django up first when ``DJANGO_SETTINGS_MODULE`` is set, as
    ``python manage.py taskstore_worker`` does.
    """

    def __init__(self, url: str | None = None, *, name: str | None = None, **options: Any) -> None:
        """``App``'s arguments (``codec``, ``clock``, ``eager``, store options); the URL defaults to the settings'."""
        super().__init__(url, name=name or _creator_module(), **options)
        self.settings: StoreSettings | None = None  # what the settings said, once read
        install(self)

    def read_settings(self) -> StoreSettings:
        """The store Django's settings name (read now), or the URL given in code or by ``taskstore worker --url``.

        ``$TASKSTORE_URL`` is not read: as for every App that names its store, the App's own configuration wins
        over the environment, in the web process and in ``taskstore worker`` alike (which warns when it differs).
        """
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            return store_settings(settings, self.url)
        except ImproperlyConfigured as exc:
            if self.url is not None:  # no Django settings to read options from: the URL given is enough
                return StoreSettings(self.url)
            raise errors.ConfigError(
                f"taskstore's DjangoApp reads Django's settings, which are not set up: {exc} "
                "(set DJANGO_SETTINGS_MODULE, or give DjangoApp a url)"
            ) from exc

    def configured_url(self) -> str | None:
        return self.read_settings().url

    def open_store(self) -> Store:
        """A new Store where the settings say (read now, so each store the App opens sees the current settings)."""
        found = self.read_settings()
        self.settings = found
        options = {**found.options, **self.store_options}
        if self.clock is not None:
            options["clock"] = self.clock
        return open_store(found.url, codec=self.codec, **options)

    def __repr__(self) -> str:
        where = redact(self.url) if self.url is not None else "url from Django's settings"
        return f"<taskstore.contrib.django.DjangoApp {self.name!r} {where} tasks={len(self.tasks)}>"
