"""Named SQL queries kept in ``.sql`` files beside each backend, loaded once.

A file holds blocks headed ``-- name: some_query``; the text up to the next header is the query.
No SQL is built by string formatting: variable parts are bound parameters (or JSON arrays).
"""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str) -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise RuntimeError(f"{filename}: query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


def load_script(package: str, filename: str) -> str:
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")
