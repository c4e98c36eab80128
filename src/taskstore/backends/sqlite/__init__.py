"""The SQLite backend; the driver lives in ``driver.py``, its SQL in ``*.sql`` beside it.

This package is what ``_connect`` loads for ``sqlite://`` URLs, so it re-exports only the names
callers outside the package use.
"""

from .driver import SCHEMA_VERSION, SQLiteDriver

__all__ = ["SCHEMA_VERSION", "SQLiteDriver"]
