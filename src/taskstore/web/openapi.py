"""``/api/openapi.json``: an OpenAPI 3.1 document generated from the endpoint table and the schema classes.

JSON Schema 2020-12 (what msgspec writes) is OpenAPI 3.1's own schema dialect, so the component schemas are
used as they come. Nothing here is written by hand per endpoint: paths, parameters, bodies, responses, roles
and error codes all come from ``api.ENDPOINTS``.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from .problems import PROBLEM_JSON
from .routes import Endpoint
from .schemas import JSON_ENCODER, Problem

REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)}")


def _members(kind: Any) -> tuple[Any, ...]:
    """The types of a ``A | B`` union (msgspec cannot describe untagged unions of Structs as one type)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return typing.get_args(kind)
    return (kind,)


def _schema(kind: Any, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    members = [refs[m] for m in _members(kind)]
    return members[0] if len(members) == 1 else {"anyOf": members}


def _parameters(endpoint: Endpoint, refs: dict[Any, dict[str, Any]], components: dict[str, Any]) -> list[Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
        for name in _PARAM.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        ref = refs[endpoint.query]["$ref"].rsplit("/", 1)[-1]
        schema = components[ref]
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if prop.get("type") == "array" or any(p.get("type") == "array" for p in prop.get("anyOf", ())):
                param.update(style="form", explode=True)
            params.append(param)
    return params


def _operation(endpoint: Endpoint, refs: dict[Any, dict[str, Any]], components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": endpoint.name, "summary": endpoint.summary, "tags": [endpoint.tag]}
    if endpoint.description:
        op["description"] = endpoint.description
    if endpoint.role is not None:
        op["security"] = [{"bearer": []}]
        op["x-taskstore-role"] = endpoint.role.label
    params = _parameters(endpoint, refs, components)
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(endpoint.body, refs)}},
        }
    responses: dict[str, Any] = {}
    if endpoint.response is not None:
        content = {endpoint.media_type: {"schema": _schema(endpoint.response, refs)}}
        responses[str(endpoint.status)] = {"description": HTTPStatus(endpoint.status).phrase, "content": content}
    else:
        responses[str(endpoint.status)] = {"description": HTTPStatus(endpoint.status).phrase}
    problem = {PROBLEM_JSON: {"schema": refs[Problem]}}
    for status in sorted({*endpoint.errors, 500}):
        response: dict[str, Any] = {"description": HTTPStatus(status).phrase, "content": problem}
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        responses[str(status)] = response
    op["responses"] = responses
    return op


def document(mounted: Iterable[tuple[str, Sequence[Endpoint]]]) -> dict[str, Any]:
    """The OpenAPI document of endpoint tables mounted at prefixes (``("/api/v1", api.ENDPOINTS)``)."""
    tables = [(prefix, list(endpoints)) for prefix, endpoints in mounted]
    kinds: list[Any] = [Problem]
    for _, endpoints in tables:
        for e in endpoints:
            for kind in (e.body, e.response, e.query):
                if kind is not None:
                    kinds.extend(_members(kind))
    unique = list(dict.fromkeys(kinds))
    schemas, components = msgspec.json.schema_components(unique, ref_template=REF)
    refs = dict(zip(unique, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for prefix, endpoints in tables:
        for e in endpoints:
            paths.setdefault(prefix + e.path, {})[e.method.lower()] = _operation(e, refs, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskstore",
            "version": __version__,
            "description": "A durable task store and queue: the JSON API of `taskstore serve` (SPEC §10).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def routes(state: Any) -> list[BaseRoute]:
    from . import api, metrics

    body = JSON_ENCODER.encode(document([("/api/v1", api.ENDPOINTS), ("", metrics.ENDPOINTS)]))

    async def serve(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return [Route("/api/openapi.json", serve, methods=["GET"], name="openapi")]
