"""The HTTP side of taskstore (``pip install 'taskstore[web]'``): the ASGI app of ``taskstore serve``.

``create_app(url_or_store, tokens=...)`` gives one Starlette app with the JSON API under ``/api/v1`` (SPEC §10),
its OpenAPI 3.1 document at ``/api/openapi.json``, Prometheus text at ``/metrics`` and server-sent events of
status changes at ``/api/v1/events``; mount it inside FastAPI, Starlette or Django (ASGI) or serve it with
uvicorn. The core never imports this package.
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, create_app
from .auth import Role, Token

__all__ = ["DEFAULT_MAX_BODY", "Role", "Token", "create_app"]
