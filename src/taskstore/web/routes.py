"""Endpoints as data: what each takes, returns, refuses and who may call it, and the one wrapper that enforces it.

An ``Endpoint`` names its body, query and response types (``schemas``), its role and the errors it can
answer with. ``route`` turns it into a Starlette route that authenticates, caps and decodes the body, decodes
the query string, calls the handler and encodes what it returns; ``openapi.document`` reads the same table.
So the OpenAPI document cannot drift from what the handlers accept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import Role
from .problems import HTTPProblem, error_response, log
from .schemas import JSON_ENCODER

if TYPE_CHECKING:
    from ..store import Store
    from .app import WebState


@dataclass(frozen=True)
class Call:
    """What a handler gets: the store, the decoded body and query, the path parameters and the caller's role."""

    store: Store
    body: Any
    query: Any
    path: Mapping[str, str]
    role: Role
    request: Request
    state: WebState


Handler = Callable[[Call], Awaitable[Any]]
Responder = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # relative to the mount point, with ``{name}`` path parameters
    name: str  # the OpenAPI operationId
    summary: str
    role: Role | None  # None: public (the OpenAPI document)
    handler: Handler
    # Types, or unions of them (``A | B``), from ``schemas``.
    response: Any = None
    status: int = 200
    body: Any = None
    query: type | None = None
    errors: tuple[int, ...] = ()
    tag: str = "tasks"
    media_type: str = "application/json"
    description: str = ""
    # False: the handler reads and decodes the body itself (a body of several shapes); ``body`` documents it.
    decode_body: bool = True
    # Path parameters' types for the document (the store checks the values); a name not here is an id.
    params: Mapping[str, Any] = field(default_factory=dict)


def _decoder(kind: Any) -> msgspec.json.Decoder[Any] | None:
    return None if kind is None else msgspec.json.Decoder(kind)


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refused with 413 once it passes ``cap`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise HTTPProblem(413, "PayloadTooLarge", f"the request body is over the limit of {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise HTTPProblem(413, "PayloadTooLarge", f"the request body is over the limit of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _list_fields(kind: type) -> dict[str, bool]:
    """Each query field's name, and whether it takes a list (worked out once per endpoint, not per request)."""
    return {f.name: _is_list(f.type) for f in msgspec.structs.fields(kind)}


def _query_dict(request: Request, fields: Mapping[str, bool]) -> dict[str, Any]:
    """Query parameters by name; a parameter whose field is a list keeps every value it was given."""
    out: dict[str, Any] = {}
    for key in request.query_params:
        if key not in fields:
            raise HTTPProblem(422, "InvalidTask", f"unknown query parameter {key!r}", field=key)
        values = request.query_params.getlist(key)
        if fields[key]:
            out[key] = values
        elif len(values) > 1:
            raise HTTPProblem(422, "InvalidTask", f"query parameter {key!r} is given more than once", field=key)
        else:
            out[key] = values[0]
    return out


def _is_list(annotation: Any) -> bool:
    text = repr(annotation)
    return "list[" in text


def routes(endpoints: Iterable[Endpoint], state: WebState) -> list[Route]:
    """One route per path, serving each of its methods: a wrong method's 405 then lists them all in ``Allow``
    (one route per endpoint would answer for the first route of that path alone)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    out: list[Route] = []
    for path, methods in by_path.items():
        handlers = {method: _respond(endpoint, state) for method, endpoint in methods.items()}
        if "GET" in handlers:
            handlers.setdefault("HEAD", handlers["GET"])

        async def dispatch(request: Request, handlers: Mapping[str, Responder] = handlers) -> Response:
            return await handlers[request.method](request)

        names = "|".join(e.name for e in methods.values())
        out.append(Route(path, dispatch, methods=list(handlers), name=names))
    return out


def route(endpoint: Endpoint, state: WebState) -> Route:
    """One endpoint alone as a route (a table whose paths each have one method can use this)."""
    return Route(endpoint.path, _respond(endpoint, state), methods=[endpoint.method], name=endpoint.name)


def _respond(endpoint: Endpoint, state: WebState) -> Responder:
    body_decoder = _decoder(endpoint.body) if endpoint.decode_body else None
    query_fields = None if endpoint.query is None else _list_fields(endpoint.query)

    async def respond(request: Request) -> Response:
        try:
            role = state.authenticate(request, endpoint.role)
            body = None
            if body_decoder is not None:
                raw = await read_body(request, state.max_body)
                if not raw:
                    raise HTTPProblem(422, "InvalidTask", "a JSON body is required")
                body = body_decoder.decode(raw)
            query: Any = None
            if endpoint.query is not None and query_fields is not None:
                query = msgspec.convert(_query_dict(request, query_fields), endpoint.query, strict=False)
            store = await state.store()
            call = Call(store, body, query, request.path_params, role, request, state)
            result = await endpoint.handler(call)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _invalid(exc)
        except RecursionError:
            # msgspec raises this for JSON nested deeper than it will follow: bad input, not a server fault.
            return error_response(HTTPProblem(422, "InvalidTask", "the body is nested too deeply"))
        except Exception as exc:
            return error_response(exc)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=204)
        return Response(JSON_ENCODER.encode(result), status_code=endpoint.status, media_type=endpoint.media_type)

    return respond


def _invalid(exc: Exception) -> Response:
    if isinstance(exc, msgspec.ValidationError):
        return error_response(exc)
    log.debug("malformed JSON body: %s", exc)
    return error_response(HTTPProblem(422, "InvalidTask", f"the body is not valid JSON: {exc}"))
