"""The PostgreSQL backend; the driver lives in ``driver.py``, its SQL and migrations beside it.

This package is what ``_connect`` loads for ``postgresql://`` URLs; it re-exports the driver.
"""

from .driver import PostgresDriver

__all__ = ["PostgresDriver"]
