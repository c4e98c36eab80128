"""The PostgreSQL backend; the driver lives in ``driver.py``, its SQL and migrations beside it.

This package is what ``_connect`` loads for ``postgresql://`` URLs, so it re-exports only the names
callers outside the package use: the driver, and the two internals the benchmarks in ``bench/`` read
(the loaded queries and the bytea encoder) so those scripts keep working unchanged.
"""

from .driver import _RAW, PostgresDriver, _b64

__all__ = ["_RAW", "PostgresDriver", "_b64"]
