"""No models: the store's tables are taskstore's own (see ``_migrate``). This module exists so that Django
sends this app the ``post_migrate`` signal, which it sends only to apps with a models module."""
