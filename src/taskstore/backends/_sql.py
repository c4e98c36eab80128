"""Named SQL queries kept in ``.sql`` files beside each backend, loaded once.

A file holds blocks headed ``-- name: some_query``; the text up to the next header is the query.
A block whose name starts with ``_`` is a fragment, not a query: a query includes it as ``{name}``
(without the underscore), so a statement shared by several queries is written once. No SQL is built
from input: variable parts are bound parameters (or JSON arrays).
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
        queries[name] = _without_trailing_comments(body)
    fragments = {"{" + name[1:] + "}": text for name, text in queries.items() if name.startswith("_")}
    composed = {}
    for name, text in queries.items():
        if name.startswith("_"):
            continue
        for _ in range(len(fragments) + 1):  # a fragment may include another: repeat until none is left
            expanded = text
            for placeholder, fragment in fragments.items():
                expanded = expanded.replace(placeholder, fragment)
            if expanded == text:
                break
            text = expanded
        composed[name] = text
    return composed


def _without_trailing_comments(body: str) -> str:
    """A block's text without the comment lines that end it: they introduce the next block (and would
    swallow the rest of the line where a fragment is included mid-statement)."""
    lines = body.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).strip()


def load_script(package: str, filename: str) -> str:
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")
