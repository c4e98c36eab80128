"""The dashboard of ``taskstore serve`` (SPEC §10): server-rendered pages with htmx, live by server-sent events.

Vendored, pinned front-end files live in ``static/`` (htmx 2.0.11 and its SSE extension 2.2.4, both under the
Zero-Clause BSD licence, next to them); there is no Node build and nothing is fetched from a CDN.
"""

from __future__ import annotations

from .views import routes

__all__ = ["routes"]
