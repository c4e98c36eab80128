"""The SQLite backend's named queries (``queries.sql``), loaded once and shared by its modules."""

from __future__ import annotations

from .._sql import load_queries

Q = load_queries("taskstore.backends.sqlite", "queries.sql")
